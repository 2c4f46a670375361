// One harness for the OCI document parsers: the first byte picks the parser
// (index, manifest, config, oci-layout, image record, runtime log), the rest is
// the document. Every parser must refuse bad input with an error, never crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "berth/oci/container.h"
#include "berth/oci/image_spec.h"
#include "berth/oci/image_store.h"
#include "berth/oci/runtime.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    using namespace berth::oci;
    switch (data[0] % 6) {
        case 0: {
            auto idx = parseIndex(text);
            if (idx) (void)selectManifest(*idx, hostPlatform());
            break;
        }
        case 1: {
            auto m = parseManifest(text);
            if (m) (void)extractMetadata(*m, Descriptor{}, ImageConfig{});
            break;
        }
        case 2: (void)parseConfig(text); break;
        case 3: (void)parseLayoutFile(text); break;
        case 4: (void)imageRecordFromJson(text); (void)containerRecordFromJson(text); break;
        case 5: (void)summariseRuntimeLog(text); break;
    }
    return 0;
}
