#include "berth/transports/mtp.h"

namespace berth::transports {

std::string_view mtpStatusName(MtpStatus s) {
    switch (s) {
        case MtpStatus::kDown: return "Down";
        case MtpStatus::kConnecting: return "Connecting";
        case MtpStatus::kUp: return "Up";
        case MtpStatus::kError: return "Error";
    }
    return "Error";
}

}  // namespace berth::transports
