package vnet

// Tests against scratch namespaces built with `ip` (root only), deleted in
// t.Cleanup. Names start with $VNET_TEST_NS_PREFIX (default vnh-gotest-PID).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const podMAC = "42:a4:a6:22:80:2e"

var nsSeq int64

func nsPrefix() string {
	if p := os.Getenv("VNET_TEST_NS_PREFIX"); p != "" {
		return p
	}
	return fmt.Sprintf("vnh-gotest-%d", os.Getpid())
}

// needRoot fails the test without root, so a run without it is never green
// by accident; only an explicit VNET_TEST_SKIP=1 skips, and says so.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("VNET_TEST_SKIP") == "1" {
			t.Skip("SKIPPED: needs root (network namespaces; VNET_TEST_SKIP=1)")
		}
		t.Fatal("needs root (network namespaces); set VNET_TEST_SKIP=1 to skip")
	}
}

func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNS creates an empty scratch namespace (lo up), deleted on cleanup.
func newNS(t *testing.T) (name, path string) {
	t.Helper()
	name = fmt.Sprintf("%s-%d", nsPrefix(), atomic.AddInt64(&nsSeq, 1))
	ip(t, "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	ip(t, "-n", name, "link", "set", "lo", "up")
	return name, "/var/run/netns/" + name
}

// newPod builds the fixture pod: eth0 42:a4:a6:22:80:2e 10.1.90.5/24,
// default via 10.1.90.1, the host end veth0 in a second namespace.
func newPod(t *testing.T) (name, path string) {
	t.Helper()
	host, _ := newNS(t)
	name, path = newNS(t)
	ip(t, "-n", host, "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", name)
	ip(t, "-n", host, "link", "set", "veth0", "up")
	ip(t, "-n", host, "addr", "add", "10.1.90.1/24", "dev", "veth0")
	ip(t, "-n", name, "link", "set", "eth0", "address", podMAC, "up")
	ip(t, "-n", name, "addr", "add", "10.1.90.5/24", "dev", "eth0")
	ip(t, "-n", name, "route", "add", "default", "via", "10.1.90.1")
	return name, path
}

// dump is the project's one settled namespace dump (scripts/nsdump.sh:
// links, addresses, routes and rules of both families in every table,
// qdiscs, nf_tables; once IPv6 DAD is over), to compare before and after.
func dump(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("bash", "../scripts/nsdump.sh", ns).Output()
	if err != nil {
		t.Fatalf("nsdump.sh %s: %v", ns, err)
	}
	return string(out)
}

func wantStatus(t *testing.T, err error, want Status, mention string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("want *Error with %s, got %v", want.Name(), err)
		return
	}
	if e.Status != want || !errors.Is(err, want) {
		t.Errorf("want %s, got %s: %s", want.Name(), e.Status.Name(), e.Message)
	}
	if !strings.Contains(e.Message, mention) {
		t.Errorf("message %q does not mention %q", e.Message, mention)
	}
	if !strings.Contains(err.Error(), want.Name()) {
		t.Errorf("Error() %q lacks the status name", err.Error())
	}
}

// arpRequest is a broadcast ARP who-has 10.1.90.1 tell 10.1.90.5.
func arpRequest() []byte {
	mac := []byte{0x42, 0xa4, 0xa6, 0x22, 0x80, 0x2e}
	f := bytes.Repeat([]byte{0xff}, 6)
	f = append(f, mac...)
	f = append(f, 0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1)
	f = append(f, mac...)
	f = append(f, 10, 1, 90, 5, 0, 0, 0, 0, 0, 0, 10, 1, 90, 1)
	return append(f, make([]byte, 60-len(f))...)
}

// readARPReply waits (bounded, with select(2): the TAP fd is blocking) for
// the gateway's ARP reply on f.
func readARPReply(f *os.File, limit time.Duration) bool {
	fd := int(f.Fd())
	buf := make([]byte, 65536)
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		var set syscall.FdSet
		set.Bits[fd/64] |= 1 << (uint(fd) % 64)
		tv := syscall.NsecToTimeval(int64(100 * time.Millisecond))
		n, err := syscall.Select(fd+1, &set, nil, nil, &tv)
		if err != nil || n == 0 {
			continue
		}
		n, err = syscall.Read(fd, buf)
		if err != nil {
			return false
		}
		fr := buf[:n]
		if n >= 42 && fr[12] == 0x08 && fr[13] == 0x06 && fr[21] == 2 &&
			bytes.Equal(fr[28:32], []byte{10, 1, 90, 1}) {
			return true
		}
	}
	return false
}

func TestVersion(t *testing.T) {
	if v := Version(); v == "" || !strings.Contains(v, ".") {
		t.Fatalf("Version() = %q", v)
	}
	if ErrNoVeth.String() != "no veth in the namespace" || ErrNoVeth.Name() != "VNET_ERR_NO_VETH" {
		t.Fatalf("status names: %q %q", ErrNoVeth.String(), ErrNoVeth.Name())
	}
}

func TestSetupTapTeardown(t *testing.T) {
	needRoot(t)
	ns, path := newPod(t)
	before := dump(t, ns)

	n, err := Setup(path, Config{Hostname: "vm1"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.InterfaceCount() != 1 {
		t.Fatalf("InterfaceCount = %d", n.InterfaceCount())
	}
	ifs, err := n.Interfaces()
	if err != nil || len(ifs) != 1 || ifs[0].Tap != "tap0" || ifs[0].VMMAC != podMAC || ifs[0].Veth != "eth0" {
		t.Fatalf("Interfaces = %+v, %v", ifs, err)
	}
	res, err := n.Result()
	if err != nil || !json.Valid(res) || !bytes.Contains(res, []byte(`"cniVersion"`)) {
		t.Fatalf("Result = %s, %v", res, err)
	}

	f, err := n.TapFile(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_GETFD, 0)
	if errno != 0 || flags&syscall.FD_CLOEXEC == 0 {
		t.Errorf("TAP file is not close-on-exec (flags %#x, %v)", flags, errno)
	}
	if _, err := f.Write(arpRequest()); err != nil {
		t.Fatalf("write to TAP: %v", err)
	}
	if !readARPReply(f, 3*time.Second) {
		t.Error("no ARP reply from the gateway through tap0/br0/eth0")
	}
	f.Close()
	if _, err := n.TapFile(0, 1); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("TapFile(0, 1) = %v", err)
	}
	if _, err := n.TapFile(-1, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("TapFile(-1, 0) = %v", err)
	}

	if err := n.Teardown(); err != nil {
		t.Fatal(err)
	}
	if err := n.Teardown(); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
	if after := dump(t, ns); after != before {
		t.Fatalf("namespace not restored:\nbefore %s\nafter  %s", before, after)
	}
	if _, err := n.TapFile(0, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("TapFile after teardown = %v", err)
	}
	if _, err := n.Result(); !errors.Is(err, ErrState) {
		t.Errorf("Result after teardown = %v", err)
	}
	n.Close()
	n.Close()
	if err := n.Teardown(); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Teardown after Close = %v", err)
	}
	if n.InterfaceCount() != 0 {
		t.Error("InterfaceCount after Close")
	}
}

// newMacvlanPod is newPod with eth0 a macvlan (bridge mode) of the host's
// veth0, whose peer veth1 holds the gateway 10.1.90.1: a pod a bridge
// cannot carry (a macvlan receives only frames for its own MAC).
func newMacvlanPod(t *testing.T) (name, path string) {
	t.Helper()
	host, _ := newNS(t)
	name, path = newNS(t)
	ip(t, "-n", host, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
	ip(t, "-n", host, "link", "set", "veth0", "up")
	ip(t, "-n", host, "addr", "add", "10.1.90.1/24", "dev", "veth1")
	ip(t, "-n", host, "link", "set", "veth1", "up")
	ip(t, "-n", host, "link", "add", "link", "veth0", "name", "mv0", "address", podMAC, "type", "macvlan", "mode", "bridge")
	ip(t, "-n", host, "link", "set", "mv0", "netns", name)
	ip(t, "-n", name, "link", "set", "mv0", "name", "eth0")
	ip(t, "-n", name, "link", "set", "eth0", "up")
	ip(t, "-n", name, "addr", "add", "10.1.90.5/24", "dev", "eth0")
	ip(t, "-n", name, "route", "add", "default", "via", "10.1.90.1")
	return name, path
}

// Config.Mode from Go: a macvlan pod is refused in bridge mode, naming
// redirect mode, with nothing changed; in redirect mode the VM keeps the
// pod's MAC, there is no bridge, the gateway answers ARP through the TAP,
// and teardown restores the namespace exactly.
func TestRedirectMode(t *testing.T) {
	needRoot(t)
	ns, path := newMacvlanPod(t)
	before := dump(t, ns)

	_, err := Setup(path, Config{Mode: ModeBridge})
	wantStatus(t, err, ErrUnsupported, "redirect")
	if after := dump(t, ns); after != before {
		t.Fatalf("a refused setup changed the namespace:\nbefore %s\nafter  %s", before, after)
	}

	n, err := Setup(path, Config{Mode: ModeRedirect})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ifs, err := n.Interfaces()
	if err != nil || len(ifs) != 1 || ifs[0].Mode != ModeRedirect || ifs[0].Tap != "tap0" ||
		ifs[0].VMMAC != podMAC || ifs[0].Bridge != "" {
		t.Fatalf("Interfaces = %+v, %v", ifs, err)
	}
	if out := ip(t, "-n", ns, "-o", "link", "show", "type", "bridge"); out != "" {
		t.Errorf("a bridge in redirect mode: %s", out)
	}
	f, err := n.TapFile(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(arpRequest()); err != nil {
		t.Fatalf("write to TAP: %v", err)
	}
	if !readARPReply(f, 3*time.Second) {
		t.Error("no ARP reply from the gateway through tap0 -> eth0 (macvlan)")
	}
	f.Close()
	if err := n.Teardown(); err != nil {
		t.Fatal(err)
	}
	if after := dump(t, ns); after != before {
		t.Fatalf("namespace not restored:\nbefore %s\nafter  %s", before, after)
	}
}

func TestRecover(t *testing.T) {
	needRoot(t)
	ns, path := newPod(t)
	before := dump(t, ns)
	n, err := Setup(path, Config{DHCP: Bool(false), Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	res, err := n.Result()
	if err != nil {
		t.Fatal(err)
	}
	n.Close() // as if the launcher died: still set up

	if _, err := Setup(path, Config{}); !errors.Is(err, ErrLeftovers) {
		t.Fatalf("Setup over leftovers = %v", err)
	}
	r, err := Recover(path, string(res))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for q := 0; q < 2; q++ {
		f, err := r.TapFile(0, q)
		if err != nil {
			t.Fatalf("queue %d after recover: %v", q, err)
		}
		f.Close()
	}
	if err := r.Teardown(); err != nil {
		t.Fatal(err)
	}
	if after := dump(t, ns); after != before {
		t.Fatalf("namespace not restored after recover + teardown")
	}
	if _, err := Recover(path, "{"); !errors.Is(err, ErrState) {
		t.Errorf("Recover with bad JSON = %v", err)
	}
}

func TestErrors(t *testing.T) {
	needRoot(t)
	_, empty := newNS(t)
	_, pod := newPod(t)
	cases := []struct {
		name    string
		path    string
		cfg     Config
		want    Status
		mention string
	}{
		{"relative path", "relative/ns", Config{}, ErrInvalidArgument, "relative/ns"},
		{"missing path", "/nonexistent/vnet-go", Config{}, ErrNetns, "/nonexistent/vnet-go"},
		{"not a netns", "/proc/self/ns/uts", Config{}, ErrNetns, "/proc/self/ns/uts"},
		{"NUL in path", "/var/run/netns/x\x00y", Config{}, ErrInvalidArgument, "NUL"},
		{"no veth", empty, Config{}, ErrNoVeth, empty},
		{"too many queues", pod, Config{Queues: 1000}, ErrConfig, "queues"},
		{"negative queues", pod, Config{Queues: -1}, ErrConfig, "u32"},
		{"bad lease", pod, Config{LeaseSecs: 5}, ErrConfig, "lease_secs"},
		{"invalid CNI JSON", pod, Config{CNIResult: json.RawMessage("{")}, ErrConfig, "cni_result"},
		{"CNI naming nothing", pod, Config{CNIResult: json.RawMessage(
			`{"cniVersion":"1.0.0","interfaces":[{"name":"nope0","sandbox":"` + pod + `"}]}`)},
			ErrConfig, "nope0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, err := Setup(c.path, c.cfg)
			if n != nil {
				n.Teardown()
				n.Close()
				t.Fatal("Setup succeeded")
			}
			wantStatus(t, err, c.want, c.mention)
		})
	}
}

// Many goroutines at once: 16 setups on their own namespaces, while others
// make failing calls; every error must be the caller's own, even though
// goroutines hop between OS threads (errors never come from thread-locals).
func TestConcurrent(t *testing.T) {
	needRoot(t)
	const pods = 16
	type pod struct{ ns, path, before string }
	ps := make([]pod, pods)
	for i := range ps {
		ns, path := newPod(t)
		ps[i] = pod{ns, path, dump(t, ns)}
	}
	var wg sync.WaitGroup
	for i := range ps {
		wg.Add(1)
		go func(p pod) {
			defer wg.Done()
			n, err := Setup(p.path, Config{Queues: 2})
			if err != nil {
				t.Errorf("%s: %v", p.ns, err)
				return
			}
			defer n.Close()
			res, err := n.Result()
			if err != nil || !bytes.Contains(res, []byte(`"sandbox":"`+p.path+`"`)) {
				t.Errorf("%s: result for another namespace or failed: %v", p.ns, err)
			}
			f, err := n.TapFile(0, 1)
			if err != nil {
				t.Errorf("%s: %v", p.ns, err)
			} else {
				f.Close()
			}
			runtime.Gosched()
			if err := n.Teardown(); err != nil {
				t.Errorf("%s: teardown: %v", p.ns, err)
			}
		}(ps[i])
	}
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := 0; k < 50; k++ {
				missing := fmt.Sprintf("/nonexistent/vnet-bad-%d-%d", g, k)
				_, err := Setup(missing, Config{})
				wantStatus(t, err, ErrNetns, missing)
				runtime.Gosched()
				rel := fmt.Sprintf("rel-%d-%d", g, k)
				_, err = Setup(rel, Config{})
				wantStatus(t, err, ErrInvalidArgument, rel)
				_, err = Recover(missing, "{}")
				wantStatus(t, err, ErrState, "vnet")
				_, err = Setup(ps[g%pods].path, Config{Hostname: strings.Repeat("h", 254+g)})
				wantStatus(t, err, ErrConfig, "hostname")
			}
		}(g)
	}
	wg.Wait()
	for _, p := range ps {
		if after := dump(t, p.ns); after != p.before {
			t.Errorf("%s not restored", p.ns)
		}
	}
}
