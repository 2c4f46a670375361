#include "berth/smm/faults.h"

namespace berth::smm {

using oci::ErrorKind;

const std::vector<FaultMapping>& faultTable() {
    static const std::vector<FaultMapping> kTable = {
        {ErrorKind::kInvalidArgument, ErrorCode::kInvalidArguments,
         "check the URL (http, https, file or docker://HOST/REPO:TAG) and the other arguments"},
        {ErrorKind::kDownloadFailed, ErrorCode::kServerUnreachable,
         "the transfer broke off; check that the file server is healthy and try again"},
        {ErrorKind::kServerUnreachable, ErrorCode::kServerUnreachable,
         "check the host name and port of the URL and that the server answers from this device"},
        {ErrorKind::kTlsFailure, ErrorCode::kServerInsecure,
         "the file server's TLS certificate is not trusted by this device; fix the certificate or the CA"},
        {ErrorKind::kAuthFailed, ErrorCode::kRequestDenied, "the file server or registry refused the credentials; check Username and Password"},
        {ErrorKind::kNotFound, ErrorCode::kServerUnreachable, "nothing at that URL (or no such repository or tag in the registry); check the path of the URL"},
        {ErrorKind::kCorruptData, ErrorCode::kCorruptData,
         "the file is not a readable OCI image layout archive; rebuild or re-upload it"},
        {ErrorKind::kDigestMismatch, ErrorCode::kCorruptData,
         "a blob does not match its sha256 digest; the file was altered or damaged, re-upload it"},
        {ErrorKind::kSizeMismatch, ErrorCode::kCorruptData,
         "a blob does not have the size its descriptor gives; the file was altered or truncated"},
        {ErrorKind::kUnsupportedMediaType, ErrorCode::kDuExecEnvMismatch,
         "this ExecEnv runs OCI images (oci-layout archives); convert the package, e.g. with skopeo copy ... oci-archive:"},
        {ErrorKind::kNoMatchingPlatform, ErrorCode::kDuExecEnvMismatch,
         "the image has no manifest for this device's OS/architecture; build it for this platform"},
        {ErrorKind::kUnsafeArchive, ErrorCode::kCorruptData,
         "a layer tries to write outside the image (path traversal, link escape, device node or setuid file); "
         "the image is refused"},
        {ErrorKind::kQuotaExceeded, ErrorCode::kSystemResourcesExceeded,
         "the image is larger than the ExecEnv's disk budget (AllocatedDiskSpace) or the download cap; "
         "free space or raise the budget with ModifyConstraints()"},
        {ErrorKind::kNoSpace, ErrorCode::kSystemResourcesExceeded, "the device's storage is full; uninstall something first"},
        {ErrorKind::kRuntimeFailed, ErrorCode::kInternalError, "the OCI runtime failed; see the message and the agent log"},
        {ErrorKind::kTimeout, ErrorCode::kInternalError, "the OCI runtime did not answer in time; see the agent log"},
        {ErrorKind::kCancelled, ErrorCode::kCommandCanceled, "the operation was cancelled"},
        {ErrorKind::kConflict, ErrorCode::kInvalidDuState, "the container is in a state that does not allow this; retry later"},
        {ErrorKind::kIoError, ErrorCode::kInternalError, "a local file operation failed; see the agent log"},
    };
    return kTable;
}

const FaultMapping& faultFor(ErrorKind kind) {
    for (const auto& row : faultTable())
        if (row.kind == kind) return row;
    return faultTable().back();  // kIoError: unreachable while the table covers every kind
}

Error toUspError(const oci::RunnerError& error, std::string_view what) {
    const FaultMapping& row = faultFor(error.kind);
    std::string msg(what);
    msg += " failed: ";
    msg += error.message;
    msg += " (";
    msg += row.hint;
    msg += ")";
    return Error(row.code, std::move(msg), error.path);
}

}  // namespace berth::smm
