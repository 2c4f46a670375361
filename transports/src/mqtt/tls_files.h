#pragma once
// Loads TLS files with OpenSSL before the MQTT library sees them, so a bad file is
// reported with its name and OpenSSL's reason instead of a bare "connect failed".

#include "berth/core/result.h"
#include "berth/transports/mqtt.h"

namespace berth::transports::mqtt_detail {

// Checks the CA file/dir and the client certificate and key (present, parseable, the key
// matching the certificate). Errors: kInvalidConfiguration with path = the file.
Status checkTlsFiles(const MqttTlsConfig& tls);

// The queued OpenSSL errors as one line ("" when none), clearing the queue.
std::string drainOpenSslErrors();

}  // namespace berth::transports::mqtt_detail
