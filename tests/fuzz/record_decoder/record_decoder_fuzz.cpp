// Fuzz harness for the USP Record and Message decoder.
//
// Each input is decoded twice: as a serialized Record, and as the payload of an
// otherwise valid Record addressed to the agent, so the fuzzer reaches the Msg checks
// without first having to discover the Record envelope. Beyond "no crash", it checks
// that every reply the codec builds is a Record the peer can decode.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "berth/agent/codec.h"
#include "berth/core/log.h"

namespace {

const std::string kAgentId = "os::012345-SN0001";
const std::string kControllerId = "proto::controller";

void check(bool ok) {
    if (!ok) std::abort();
}

void checkResult(const berth::agent::DecodedRecord& d) {
    using berth::agent::DecodeKind;
    switch (d.kind) {
        case DecodeKind::kRequest:
            check(!d.msgId.empty() && d.msgType.has_value() && d.msg.body().has_request());
            break;
        case DecodeKind::kResponse:
            check(d.msg.body().has_response());
            break;
        case DecodeKind::kError:
            check(d.msg.body().has_error());
            break;
        case DecodeKind::kConnect:
            check(d.connect.has_value());
            break;
        case DecodeKind::kDisconnect:
            check(d.disconnect.has_value());
            break;
        case DecodeKind::kReplyWithError: {
            check(d.problem.has_value() && !d.reply.empty());
            // The reply goes back to whoever sent the record.
            const berth::agent::RecordCodec peer(berth::agent::CodecConfig{d.fromId});
            auto back = peer.decode(d.reply);
            if (d.replyIsDisconnect) {
                check(back.kind == DecodeKind::kDisconnect && back.disconnect->reasonCode == 7106);
            } else {
                check(back.kind == DecodeKind::kError && back.msgId == d.msgId);
            }
            break;
        }
        case DecodeKind::kDrop:
            check(d.problem.has_value() && d.reply.empty());
            break;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const bool quiet = [] {
        berth::log::Config config;
        config.level = berth::log::Level::kOff;
        berth::log::configure(config);
        berth::agent::routeProtobufLogs();
        return true;
    }();
    (void)quiet;
    static const berth::agent::RecordCodec agent(berth::agent::CodecConfig{kAgentId, 64 * 1024});

    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    checkResult(agent.decode(bytes));

    usp_record::Record wrapper;
    wrapper.set_version("1.4");
    wrapper.set_to_id(kAgentId);
    wrapper.set_from_id(kControllerId);
    wrapper.mutable_no_session_context()->set_payload(bytes.data(), bytes.size());
    checkResult(agent.decode(wrapper.SerializeAsString(), [](const std::string&) { return true; }));
    return 0;
}
