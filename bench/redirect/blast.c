#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
  const char *dev = argv[1]; int len = atoi(argv[2]); double secs = atof(argv[3]);
  int fd = open("/dev/net/tun", O_RDWR); struct ifreq ifr = {0};
  strncpy(ifr.ifr_name, dev, IFNAMSIZ); ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) { perror("TUNSETIFF"); return 1; }
  unsigned char f[2000] = {0};
  unsigned int m[6]; sscanf(argv[4], "%x:%x:%x:%x:%x:%x", &m[0],&m[1],&m[2],&m[3],&m[4],&m[5]);
  for (int i = 0; i < 6; i++) f[i] = m[i];
  f[6]=2; f[11]=1; f[12]=8; f[13]=0; /* IPv4 */
  unsigned char *ip = f + 14; int il = len - 14;
  ip[0]=0x45; ip[2]=il>>8; ip[3]=il&255; ip[8]=64; ip[9]=17;
  ip[12]=10; ip[13]=1; ip[14]=90; ip[15]=5; ip[16]=10; ip[17]=1; ip[18]=90; ip[19]=99;
  unsigned s=0; for (int i=0;i<20;i+=2) s += (ip[i]<<8)|ip[i+1]; while (s>>16) s=(s&0xffff)+(s>>16); s=~s; ip[10]=s>>8; ip[11]=s&255;
  ip[20]=0x30; ip[21]=0x39; ip[22]=0x30; ip[23]=0x39; ip[24]=(il-20)>>8; ip[25]=(il-20)&255;
  struct timespec t0, t; clock_gettime(CLOCK_MONOTONIC, &t0); long n = 0;
  for (;;) { for (int k=0;k<64;k++) if (write(fd, f, len) == len) n++;
    clock_gettime(CLOCK_MONOTONIC, &t); if ((t.tv_sec-t0.tv_sec)+(t.tv_nsec-t0.tv_nsec)/1e9 > secs) break; }
  printf("%ld\n", n); return 0; }
