// Package vnet hands a Kubernetes pod's network namespace over to a virtual
// machine. It wraps the vnet C library (libvnet, found with pkg-config):
// Setup records the pod interface's configuration, moves its addresses to
// the VM side of a TAP bridged with the veth, serves DHCP, and returns a
// Network whose TAP files go to the VMM; Teardown puts the namespace back.
//
// Errors come back through the C API's error_out argument of each call,
// never from thread-local state, so they stay right while goroutines move
// between OS threads. Calls on different Networks may run concurrently.
package vnet

/*
#cgo pkg-config: vnet
#include <stdlib.h>
#include "vnet.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"unsafe"
)

// Config mirrors the JSON config of vnet_setup. Zero values mean the
// library's defaults.
type Config struct {
	// CNIResult is a CNI result naming the pod's interfaces; without it the
	// single veth of the namespace is used.
	CNIResult json.RawMessage `json:"cni_result,omitempty"`
	// DHCP serves DHCP to the VM (default true; use Bool(false) to turn off).
	DHCP *bool `json:"dhcp,omitempty"`
	// VnetHdr opens the TAP with IFF_VNET_HDR.
	VnetHdr bool `json:"vnet_hdr,omitempty"`
	// Queues is the number of TAP queues per interface (default 1).
	Queues int `json:"queues,omitempty"`
	// DNS for the VM; overrides the CNI result's dns.
	DNS *DNS `json:"dns,omitempty"`
	// Hostname handed to the VM by DHCP.
	Hostname string `json:"hostname,omitempty"`
	// LeaseSecs is the DHCP lease time (default 86400).
	LeaseSecs int `json:"lease_secs,omitempty"`
	// Mode is how the TAP is joined to the pod interface: ModeBridge (the
	// default when empty) or ModeRedirect (no bridge; for macvlan and
	// host-device pods).
	Mode Mode `json:"mode,omitempty"`
	// IPv6 serves the pod's IPv6 addresses and routes to the VM by router
	// advertisements and DHCPv6 (default true; Bool(false) turns it off).
	IPv6 *bool `json:"ipv6,omitempty"`
}

// Mode is the topology of a setup (config "mode").
type Mode string

const (
	// ModeBridge: brN holds tapN and the pod interface, which gets a new MAC.
	ModeBridge Mode = "bridge"
	// ModeRedirect: no bridge; frames are moved between tapN and the pod
	// interface at ingress, and the pod interface keeps its MAC.
	ModeRedirect Mode = "redirect"
)

// DNS is the CNI dns object.
type DNS struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Domain      string   `json:"domain,omitempty"`
	Search      []string `json:"search,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// Bool returns a pointer to b, for Config.DHCP.
func Bool(b bool) *bool { return &b }

// Interface is what vnet made of one pod interface (from the result JSON).
type Interface struct {
	Mode    Mode   `json:"mode"`
	Tap     string `json:"tap"`
	Bridge  string `json:"bridge"`
	Veth    string `json:"veth"`
	MTU     int    `json:"mtu"`
	VMMAC   string `json:"vm_mac"`
	VethMAC string `json:"veth_mac"`
	Queues  int    `json:"queues"`
	VnetHdr bool   `json:"vnet_hdr"`
}

// Network is a pod namespace handed over to a VM. Its methods are safe for
// concurrent use. Close it when done; Close does not tear down.
type Network struct {
	mu sync.Mutex
	h  *C.vnet_handle
}

// Version is the version of the loaded C library.
func Version() string { return C.GoString(C.vnet_version()) }

// cString converts s for C, refusing NUL bytes (C would see a shorter string).
func cString(s, what string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, &Error{Status: ErrInvalidArgument, Message: what + " contains a NUL byte"}
	}
	return C.CString(s), nil
}

// call turns a status and its error_out message into an error.
func call(st C.enum_vnet_status, msg *C.char) error {
	text := ""
	if msg != nil {
		text = C.GoString(msg)
		C.vnet_string_free(msg)
	}
	if st == C.VNET_OK {
		return nil
	}
	return &Error{Status: Status(st), Message: text}
}

func wrap(h *C.vnet_handle) *Network {
	n := &Network{h: h}
	// A forgotten Close still releases the fds (never tears down).
	runtime.SetFinalizer(n, (*Network).Close)
	return n
}

// Setup hands the pod interface(s) of the network namespace at netns (e.g.
// /var/run/netns/NAME or /proc/PID/ns/net) over to a VM. On error the
// namespace is left as it was.
func Setup(netns string, cfg Config) (*Network, error) {
	if len(cfg.CNIResult) > 0 && !json.Valid(cfg.CNIResult) {
		return nil, &Error{Status: ErrConfig, Message: "cni_result is not valid JSON"}
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		return nil, &Error{Status: ErrConfig, Message: "config: " + err.Error()}
	}
	cpath, err := cString(netns, "netns path")
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cpath))
	ccfg := C.CString(string(js))
	defer C.free(unsafe.Pointer(ccfg))
	var h *C.vnet_handle
	var msg *C.char
	if err := call(C.vnet_setup(cpath, ccfg, &h, &msg), msg); err != nil {
		return nil, err
	}
	return wrap(h), nil
}

// Recover rebuilds a Network in a new process from the result JSON of an
// earlier Setup (Result): it reopens the TAP queues and serves DHCP again,
// without changing the namespace. Then tear down, or go on.
func Recover(netns, resultJSON string) (*Network, error) {
	cpath, err := cString(netns, "netns path")
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cpath))
	cres, err := cString(resultJSON, "result JSON")
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cres))
	var h *C.vnet_handle
	var msg *C.char
	if err := call(C.vnet_recover(cpath, cres, &h, &msg), msg); err != nil {
		return nil, err
	}
	return wrap(h), nil
}

var errClosed = &Error{Status: ErrInvalidArgument, Message: "the Network is closed"}

// InterfaceCount is the number of pod interfaces (and TAPs); 0 once closed.
func (n *Network) InterfaceCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return int(C.vnet_interface_count(n.h))
}

// TapFile returns a new file for TAP queue `queue` of interface `iface`:
// a close-on-exec dup of the library's fd, owned by the caller (close it;
// the Network keeps its own). Pass it to the VMM, e.g. in exec.Cmd.ExtraFiles.
func (n *Network) TapFile(iface, queue int) (*os.File, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h == nil {
		return nil, errClosed
	}
	if iface < 0 || queue < 0 || iface > 1<<31 || queue > 1<<31 {
		return nil, &Error{Status: ErrInvalidArgument, Message: fmt.Sprintf("bad TAP index %d/%d", iface, queue)}
	}
	fd := C.vnet_tap_fd(n.h, C.uint32_t(iface), C.uint32_t(queue))
	if fd < 0 {
		return nil, &Error{Status: ErrInvalidArgument, Message: fmt.Sprintf(
			"no TAP queue %d of interface %d (out of range, or torn down)", queue, iface)}
	}
	// Dup under the lock: a concurrent Teardown cannot close fd meanwhile.
	nfd, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return nil, &Error{Status: ErrTap, Message: "dup of the TAP fd: " + errno.Error()}
	}
	return os.NewFile(nfd, fmt.Sprintf("vnet-tap%d-q%d", iface, queue)), nil
}

// Result is the result JSON: a CNI 1.0.0 result plus a "vnet" object with
// what Recover needs. Save it to recover after a restart.
func (n *Network) Result() (json.RawMessage, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h == nil {
		return nil, errClosed
	}
	var out, msg *C.char
	if err := call(C.vnet_result_json(n.h, &out, &msg), msg); err != nil {
		return nil, err
	}
	defer C.vnet_string_free(out)
	return json.RawMessage(C.GoString(out)), nil
}

// Interfaces describes each pod interface as set up (TAP, bridge, the MAC
// the VM must use, ...), read from the result JSON.
func (n *Network) Interfaces() ([]Interface, error) {
	res, err := n.Result()
	if err != nil {
		return nil, err
	}
	var doc struct {
		Vnet struct {
			Interfaces []Interface `json:"interfaces"`
		} `json:"vnet"`
	}
	if err := json.Unmarshal(res, &doc); err != nil {
		return nil, &Error{Status: ErrInternal, Message: "result JSON: " + err.Error()}
	}
	return doc.Vnet.Interfaces, nil
}

// Teardown puts the namespace back exactly as it was before Setup. Calling
// it again after success does nothing; after ErrIncomplete it retries what
// is left. The Network stays open (Close it).
func (n *Network) Teardown() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h == nil {
		return errClosed
	}
	var msg *C.char
	return call(C.vnet_teardown(n.h, &msg), msg)
}

// Close frees the Network: closes its fds and stops its DHCP servers. It
// does not tear down, so a namespace left set up can be recovered. Closing
// twice is a no-op.
func (n *Network) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h != nil {
		C.vnet_free(n.h)
		n.h = nil
		runtime.SetFinalizer(n, nil)
	}
	return nil
}
