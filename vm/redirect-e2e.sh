#!/bin/bash
# Redirect mode with a real guest (issue 16): pods made by the reference CNI
# plugins (macvlan with a neighbour pod, ptp, host-device), and dual-stack IPv6 (r6). See vm/e2e.sh.
exec "$(dirname "$0")/e2e.sh" ${*:-m p h r6}
