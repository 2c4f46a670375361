#pragma once
// Deployment Unit UUIDs as TR-181 Annex "Software Module Management UUID Usage"
// describes them: RFC 4122 version 5 (SHA-1, name-based) in the DNS namespace over
// "<Name>.<Vendor>.", where Name has every character outside [0-9A-Za-z_-]
// percent-encoded in lower-case hex ("sample.1" -> "sample%2e1").
// Pure functions; any thread.

#include <string>
#include <string_view>

namespace berth::smm {

// RFC 4122 v5 UUID of `name` in the DNS namespace, lower-case 8-4-4-4-12 text.
std::string uuidV5Dns(std::string_view name);

// The name hashed for a DU: "<escaped Name>.<Vendor>." (a trailing dot of Vendor is not doubled).
std::string duUuidName(std::string_view duName, std::string_view vendor);

// UUID of a DU from its Name and Vendor (uuidV5Dns(duUuidName(...))).
std::string duUuid(std::string_view duName, std::string_view vendor);

// True for 36 characters in the 8-4-4-4-12 hex form.
bool isValidUuid(std::string_view text);

}  // namespace berth::smm
