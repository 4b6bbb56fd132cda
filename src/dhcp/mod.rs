//! STUB (replaced by the real DHCP server).
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub client_mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub routes: Vec<(ipnetwork::Ipv4Network, Option<Ipv4Addr>)>,
    pub dns_servers: Vec<Ipv4Addr>,
    pub search: Vec<String>,
    pub domain: Option<String>,
    pub hostname: Option<String>,
    pub mtu: Option<u16>,
    pub lease_secs: u32,
}
pub struct Reply {
    pub bytes: Vec<u8>,
    pub dest: SocketAddrV4,
}
pub fn handle_packet(_l: &Lease, _s: Ipv4Addr, _p: &[u8]) -> Option<Reply> {
    None
}
pub fn bind_socket(_bridge: &str) -> std::io::Result<UdpSocket> {
    UdpSocket::bind("127.0.0.1:0")
}
pub struct ServerHandle;
impl ServerHandle {
    pub fn stop(self) {}
}
pub fn spawn(_s: UdpSocket, _l: Lease, _ip: Ipv4Addr) -> std::io::Result<ServerHandle> {
    Ok(ServerHandle)
}
