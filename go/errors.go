package vnet

/*
#include "vnet.h"
*/
import "C"

import "fmt"

// Status is a vnet_status code of the C API. Every non-OK Status is also an
// error value, so errors.Is(err, vnet.ErrNoVeth) tests a failure's class.
type Status int

// The codes of vnet.h (taken from the header, so they cannot drift).
const (
	OK                 Status = C.VNET_OK
	ErrInvalidArgument Status = C.VNET_ERR_INVALID_ARGUMENT
	ErrNetns           Status = C.VNET_ERR_NETNS
	ErrNoVeth          Status = C.VNET_ERR_NO_VETH
	ErrSeveralVeths    Status = C.VNET_ERR_SEVERAL_VETHS
	ErrNoAddress       Status = C.VNET_ERR_NO_ADDRESS
	ErrConfig          Status = C.VNET_ERR_CONFIG
	ErrNameExists      Status = C.VNET_ERR_NAME_EXISTS
	ErrNetlink         Status = C.VNET_ERR_NETLINK
	ErrTap             Status = C.VNET_ERR_TAP
	ErrFilter          Status = C.VNET_ERR_FILTER
	ErrDHCP            Status = C.VNET_ERR_DHCP
	ErrState           Status = C.VNET_ERR_STATE
	ErrLeftovers       Status = C.VNET_ERR_LEFTOVERS
	ErrIncomplete      Status = C.VNET_ERR_INCOMPLETE
	ErrInternal        Status = C.VNET_ERR_INTERNAL
	ErrPanic           Status = C.VNET_ERR_PANIC
	ErrUnsupported     Status = C.VNET_ERR_UNSUPPORTED
)

var statusNames = map[Status]string{
	OK:                 "VNET_OK",
	ErrInvalidArgument: "VNET_ERR_INVALID_ARGUMENT",
	ErrNetns:           "VNET_ERR_NETNS",
	ErrNoVeth:          "VNET_ERR_NO_VETH",
	ErrSeveralVeths:    "VNET_ERR_SEVERAL_VETHS",
	ErrNoAddress:       "VNET_ERR_NO_ADDRESS",
	ErrConfig:          "VNET_ERR_CONFIG",
	ErrNameExists:      "VNET_ERR_NAME_EXISTS",
	ErrNetlink:         "VNET_ERR_NETLINK",
	ErrTap:             "VNET_ERR_TAP",
	ErrFilter:          "VNET_ERR_FILTER",
	ErrDHCP:            "VNET_ERR_DHCP",
	ErrState:           "VNET_ERR_STATE",
	ErrLeftovers:       "VNET_ERR_LEFTOVERS",
	ErrIncomplete:      "VNET_ERR_INCOMPLETE",
	ErrInternal:        "VNET_ERR_INTERNAL",
	ErrPanic:           "VNET_ERR_PANIC",
	ErrUnsupported:     "VNET_ERR_UNSUPPORTED",
}

// Name is the C name of the status, e.g. "VNET_ERR_NO_VETH".
func (s Status) Name() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("VNET_STATUS_%d", int(s))
}

// String is the library's description, e.g. "no veth in the namespace".
func (s Status) String() string {
	if _, ok := statusNames[s]; !ok {
		return s.Name()
	}
	return C.GoString(C.vnet_status_str(C.int(s)))
}

func (s Status) Error() string { return "vnet: " + s.String() }

// Error is a failed vnet call: its status and the library's message.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("vnet: %s: %s", e.Status.Name(), e.Message)
}

// Is makes errors.Is(err, vnet.ErrNetns) match on the status.
func (e *Error) Is(target error) bool {
	s, ok := target.(Status)
	return ok && s == e.Status
}
