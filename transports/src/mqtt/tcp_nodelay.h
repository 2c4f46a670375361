#pragma once
// The MQTT library (Paho C) opens its broker sockets itself and never sets TCP_NODELAY,
// so a small PUBLISH written right after another one waits for the broker's delayed
// acknowledgement (about 40 ms on Linux): a Notify followed by a SetResp, or QoS 1
// traffic, stalls that long. Paho offers no access to its socket, so after CONNACK the
// binding finds the process's TCP sockets connected to the broker's port and switches
// Nagle off on them. Every such socket belongs to this process and talks to a broker,
// so switching it on for a neighbour is harmless.

#include <chrono>
#include <string>

namespace berth::transports::detail {

// Sets TCP_NODELAY on every TCP socket of this process whose peer is `port` on
// `host` (compared when `host` is a numeric address; any host otherwise). Returns how
// many sockets were changed. Loop or any thread; never blocks.
int enableNoDelayToBroker(const std::string& host, int port);

// When the last enableNoDelayToBroker() in this process began (any thread; the epoch
// before the first). A scan that began after a socket was connected has seen it, so a
// client may skip its own: one scan looks at every fd of the process, and with
// thousands of clients in one process (berth-sim) a scan per connect is quadratic.
std::chrono::steady_clock::time_point lastNoDelayScan();

}  // namespace berth::transports::detail
