//! A small typed wrapper over one rtnetlink connection: the requests vnet
//! makes, each answered by the kernel's ack (we never sleep or poll).
//!
//! The connection's socket is created on the netns thread, so every request
//! acts on the pod namespace.

use std::io;

use futures::StreamExt;
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

pub struct Netlink {
    handle: rtnetlink::Handle,
}

impl Netlink {
    /// Open a connection in the current namespace and drive it on the
    /// current tokio runtime. Must be called inside a runtime context.
    pub fn open() -> io::Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    async fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | flags;
        let mut replies = self
            .handle
            .request(req)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let mut out = Vec::new();
        while let Some(reply) = replies.next().await {
            match reply.payload {
                NetlinkPayload::InnerMessage(m) => out.push(m),
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                _ => {}
            }
        }
        Ok(out)
    }

    async fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.request(msg, NLM_F_ACK | flags).await.map(drop)
    }

    /// All links of the namespace.
    pub async fn links(&mut self) -> io::Result<Vec<LinkMessage>> {
        let replies = self
            .request(
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
                NLM_F_DUMP,
            )
            .await?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .collect())
    }

    /// One link by index.
    pub async fn link(&mut self, index: u32) -> io::Result<LinkMessage> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        let replies = self.request(RouteNetlinkMessage::GetLink(m), 0).await?;
        replies
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    /// All addresses of both families.
    pub async fn addresses(&mut self) -> io::Result<Vec<AddressMessage>> {
        let replies = self
            .request(
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
                NLM_F_DUMP,
            )
            .await?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Some(a),
                _ => None,
            })
            .collect())
    }

    /// All routes of one family, in every table.
    pub async fn routes(&mut self, family: AddressFamily) -> io::Result<Vec<RouteMessage>> {
        let mut m = RouteMessage::default();
        m.header.address_family = family;
        let replies = self
            .request(RouteNetlinkMessage::GetRoute(m), NLM_F_DUMP)
            .await?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Some(r),
                _ => None,
            })
            .collect())
    }

    /// Create a link; fails with EEXIST if its name is taken.
    pub async fn new_link(&mut self, msg: LinkMessage) -> io::Result<()> {
        self.ack(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .await
    }

    /// Change an existing link (by `msg.header.index`).
    pub async fn set_link(&mut self, msg: LinkMessage) -> io::Result<()> {
        self.ack(RouteNetlinkMessage::SetLink(msg), 0).await
    }

    /// Delete one link by index.
    pub async fn del_link(&mut self, index: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.ack(RouteNetlinkMessage::DelLink(m), 0).await
    }

    /// Delete every link of a group in one request: the kernel then pays the
    /// RCU grace periods of unregistering once for all of them.
    pub async fn del_link_group(&mut self, group: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::Group(group));
        self.ack(RouteNetlinkMessage::DelLink(m), 0).await
    }

    pub async fn add_address(&mut self, msg: AddressMessage) -> io::Result<()> {
        self.ack(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await
    }

    pub async fn del_address(&mut self, msg: AddressMessage) -> io::Result<()> {
        self.ack(RouteNetlinkMessage::DelAddress(msg), 0).await
    }

    pub async fn add_route(&mut self, msg: RouteMessage) -> io::Result<()> {
        self.ack(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await
    }

    pub async fn del_route(&mut self, msg: RouteMessage) -> io::Result<()> {
        self.ack(RouteNetlinkMessage::DelRoute(msg), 0).await
    }

    /// Set link flags IFF_UP on or off, touching no other flag.
    pub async fn set_up(&mut self, index: u32, up: bool) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.change_mask = LinkFlags::Up;
        if up {
            m.header.flags = LinkFlags::Up;
        }
        self.set_link(m).await
    }
}

/// Helpers to read attributes of a link message.
pub mod link_attr {
    use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};

    pub fn name(l: &LinkMessage) -> Option<&str> {
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.as_str()),
            _ => None,
        })
    }
    pub fn mac(l: &LinkMessage) -> Option<&[u8]> {
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(m) => Some(m.as_slice()),
            _ => None,
        })
    }
    pub fn mtu(l: &LinkMessage) -> Option<u32> {
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
    }
    pub fn controller(l: &LinkMessage) -> Option<u32> {
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::Controller(m) => Some(*m),
            _ => None,
        })
    }
    pub fn group(l: &LinkMessage) -> u32 {
        l.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Group(g) => Some(*g),
                _ => None,
            })
            .unwrap_or(0)
    }
    pub fn kind(l: &LinkMessage) -> Option<&InfoKind> {
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::Kind(k) => Some(k),
                _ => None,
            }),
            _ => None,
        })
    }
}
