// libcni-driver: drive a conflist through libcni, the library container
// runtimes use, as tests/cni.sh does. Built in GOPATH mode against Debian's
// golang-github-appc-cni-dev (offline).
//
//	libcni-driver ACTION CONFLIST NETNS CONTAINERID IFNAME CACHEDIR CNI_PATH
//
// ACTION: add (validate the list, then ADD; prints the result), check (the
// whole list), checklast (the last plugin alone, with the list's cached
// result), del. Exit 1 with the error on stderr on failure.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

func main() {
	if len(os.Args) != 8 {
		fmt.Fprintln(os.Stderr, "usage: libcni-driver ACTION CONFLIST NETNS CONTAINERID IFNAME CACHEDIR CNI_PATH")
		os.Exit(64)
	}
	action, file, netns, id, ifname, cache, path := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6], os.Args[7]
	list, err := libcni.ConfListFromFile(file)
	if err != nil {
		fail(err)
	}
	cni := libcni.NewCNIConfigWithCacheDir(strings.Split(path, ":"), cache, nil)
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: ifname, CacheDir: cache}
	ctx := context.Background()
	switch action {
	case "add":
		if _, err := cni.ValidateNetworkList(ctx, list); err != nil {
			fail(fmt.Errorf("validate: %w", err))
		}
		res, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			fail(err)
		}
		if err := res.Print(); err != nil {
			fail(err)
		}
	case "check":
		if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	case "checklast":
		var raw map[string]interface{}
		if err := json.Unmarshal(list.Plugins[len(list.Plugins)-1].Bytes, &raw); err != nil {
			fail(err)
		}
		raw["name"], raw["cniVersion"] = list.Name, list.CNIVersion
		b, _ := json.Marshal(raw)
		net, err := libcni.ConfFromBytes(b)
		if err != nil {
			fail(err)
		}
		if err := cni.CheckNetwork(ctx, net, rt); err != nil {
			fail(err)
		}
	case "del":
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			fail(err)
		}
	default:
		fail(fmt.Errorf("unknown action %q", action))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "libcni-driver:", err)
	os.Exit(1)
}
