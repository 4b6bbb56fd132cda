#!/usr/bin/env bash
# Delete scratch namespaces that an interrupted test run may have left.
# Only names our tests use; never the root namespace.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(vnt-|vnth-|vnete2e-|vnet-gst-|vnet-demo-|vnb|vnh-eco-|vnh-gotest-|vnh-dhcp-|vn15-|vn16-|vn18-|vncni-|vn17-)' || true); do
  ip netns del "$ns" 2>/dev/null || true
done
