#include "berth/oci/image_store.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <ftw.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <set>

#include <nlohmann/json.hpp>

#include "berth/core/beneath.h"
#include "berth/core/fd.h"
#include "berth/core/log.h"
#include "berth/oci/digest.h"
#include "berth/oci/registry.h"
#include "fs_util.h"

namespace berth::oci {
namespace {

using nlohmann::json;
constexpr std::size_t kMaxJsonBlob = 4 << 20;

struct BlobInfo {
    std::string computed;  // sha256 of the bytes in the archive
    std::uint64_t size = 0;
};

// An archive's content once extracted to a staging directory.
struct Extracted {
    std::string blobDir;
    std::string indexJson;
    std::string layoutJson;
    bool hasIndex = false;
    bool hasLayout = false;
    std::map<std::string, BlobInfo> blobs;  // by hex
};

struct ArchiveDeleter {
    void operator()(archive* a) const { archive_read_free(a); }
};

bool isHex64(const std::string& s) {
    if (s.size() != 64) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

using ArchivePtr = std::unique_ptr<archive, ArchiveDeleter>;

RunnerResult<ArchivePtr> openLayoutArchive(const std::string& archivePath) {
    ArchivePtr a(archive_read_new());
    archive_read_support_format_tar(a.get());
    archive_read_support_filter_gzip(a.get());
    archive_read_support_filter_zstd(a.get());
    archive_read_support_filter_xz(a.get());
    if (archive_read_open_filename(a.get(), archivePath.c_str(), 1 << 17) != ARCHIVE_OK) {
        if (errno == ENOENT) return RunnerError(ErrorKind::kNotFound, "image archive not found", archivePath);
        return RunnerError(ErrorKind::kCorruptData, std::string("not a tar archive: ") + archive_error_string(a.get()),
                           archivePath);
    }
    return a;
}

// Where one archive entry's bytes go: into `text` (index.json, oci-layout) or, hashed,
// into the blob file `fd`.
struct EntryCopy {
    std::string* text = nullptr;
    int fd = -1;
    Sha256 hash;
    std::uint64_t size = 0;
};

// Copies the current entry's data; `total` counts the archive's bytes against the limit.
RunnerStatus copyEntry(archive* a, std::string& buf, EntryCopy& c, std::uint64_t& total, const UnpackLimits& limits,
                       const std::string& archivePath, const std::string& path) {
    for (;;) {
        la_ssize_t n = archive_read_data(a, buf.data(), buf.size());
        if (n < 0)
            return RunnerError(ErrorKind::kCorruptData, std::string("image archive: ") + archive_error_string(a), path);
        if (n == 0) return {};
        c.size += static_cast<std::uint64_t>(n);
        total += static_cast<std::uint64_t>(n);
        if (total > limits.maxBytes)
            return RunnerError(ErrorKind::kQuotaExceeded,
                               "image archive holds more than " + std::to_string(limits.maxBytes) + " bytes",
                               archivePath);
        if (c.text) {
            if (c.text->size() + static_cast<std::size_t>(n) > kMaxJsonBlob)
                return RunnerError(ErrorKind::kCorruptData, "index too large", path);
            c.text->append(buf.data(), static_cast<std::size_t>(n));
            continue;
        }
        c.hash.update(buf.data(), static_cast<std::size_t>(n));
        std::size_t done = 0;
        while (done < static_cast<std::size_t>(n)) {
            ssize_t w = ::write(c.fd, buf.data() + done, static_cast<std::size_t>(n) - done);
            if (w < 0) {
                if (errno == EINTR) continue;
                return errnoError("write", errno, path);
            }
            done += static_cast<std::size_t>(w);
        }
    }
}

RunnerResult<Extracted> extractLayout(const std::string& archivePath, const std::string& stagingDir,
                                      const UnpackLimits& limits, const CancelToken* cancel) {
    Extracted out;
    out.blobDir = stagingDir + "/blobs";
    BERTH_OCI_TRY(detail::makeDirs(out.blobDir));
    UniqueFd blobDirFd(::open(out.blobDir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!blobDirFd) return errnoError("open", errno, out.blobDir);
    auto opened = openLayoutArchive(archivePath);
    if (!opened) return std::move(opened).error();
    archive* a = opened->get();

    std::uint64_t total = 0, entries = 0;
    std::string buf(1 << 17, '\0');
    for (;;) {
        if (cancel && cancel->cancelled()) return RunnerError(ErrorKind::kCancelled, "pull cancelled");
        archive_entry* e = nullptr;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
            return RunnerError(ErrorKind::kCorruptData, std::string("image archive: ") + archive_error_string(a),
                               archivePath);
        if (++entries > limits.maxFiles)
            return RunnerError(ErrorKind::kQuotaExceeded, "image archive has too many entries", archivePath);
        std::string path = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
        while (path.rfind("./", 0) == 0) path = path.substr(2);
        if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e)) continue;  // dirs, links: ignored
        enum { kSkip, kIndex, kLayout, kBlob } what = kSkip;
        std::string hex;
        if (path == "index.json") what = kIndex;
        else if (path == "oci-layout") what = kLayout;
        else if (path.rfind("blobs/sha256/", 0) == 0) {
            hex = path.substr(13);
            if (!isHex64(hex)) return RunnerError(ErrorKind::kCorruptData, "malformed blob name", path);
            what = kBlob;
        }
        if (what == kSkip) continue;
        EntryCopy copy;
        copy.text = what == kIndex ? &out.indexJson : what == kLayout ? &out.layoutJson : nullptr;
        UniqueFd fd;
        if (what == kBlob) {
            if (out.blobs.count(hex)) return RunnerError(ErrorKind::kCorruptData, "blob stored twice", path);
            fd.reset(::openat(blobDirFd.get(), hex.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
            if (!fd) return errnoError("create", errno, path);
            copy.fd = fd.get();
        } else if ((what == kIndex && out.hasIndex) || (what == kLayout && out.hasLayout)) {
            return RunnerError(ErrorKind::kCorruptData, "entry stored twice", path);
        }
        BERTH_OCI_TRY(copyEntry(a, buf, copy, total, limits, archivePath, path));
        if (what == kIndex) out.hasIndex = true;
        if (what == kLayout) out.hasLayout = true;
        if (what == kBlob) out.blobs[hex] = BlobInfo{copy.hash.finish(), copy.size};
    }
    if (!out.hasLayout || !out.hasIndex)
        return RunnerError(ErrorKind::kUnsupportedMediaType, "not an OCI image layout (no oci-layout or index.json)",
                           archivePath);
    BERTH_OCI_TRY(parseLayoutFile(out.layoutJson));
    return out;
}

RunnerStatus verifyBlob(const Extracted& ex, const Descriptor& d, const char* what) {
    auto it = ex.blobs.find(digestHex(d.digest));
    if (it == ex.blobs.end())
        return RunnerError(ErrorKind::kCorruptData, std::string(what) + " blob missing from the archive", d.digest);
    if (it->second.size != static_cast<std::uint64_t>(d.size))
        return RunnerError(ErrorKind::kSizeMismatch,
                           std::string(what) + " blob is " + std::to_string(it->second.size) +
                               " bytes, its descriptor says " + std::to_string(d.size),
                           d.digest);
    if (it->second.computed != d.digest)
        return RunnerError(ErrorKind::kDigestMismatch, std::string(what) + " blob hashes to " + it->second.computed,
                           d.digest);
    return {};
}

RunnerResult<std::string> readBlob(const Extracted& ex, const Descriptor& d, const char* what) {
    BERTH_OCI_TRY(verifyBlob(ex, d, what));
    if (d.size > static_cast<std::int64_t>(kMaxJsonBlob))
        return RunnerError(ErrorKind::kCorruptData, std::string(what) + " too large", d.digest);
    return detail::readSmallFile(ex.blobDir + "/" + digestHex(d.digest), kMaxJsonBlob);
}

struct Verified {
    Extracted ex;
    Descriptor entry;      // the index entry that led to the manifest
    Descriptor manifestDesc;
    ImageManifest manifest;
    ImageConfig config;
    std::string manifestJson;
    std::string configJson;
};

RunnerResult<Verified> openVerified(const std::string& archivePath, const std::string& staging,
                                    const Platform& platform, const UnpackLimits& limits, const CancelToken* cancel) {
    auto ex = extractLayout(archivePath, staging, limits, cancel);
    if (!ex) return std::move(ex).error();
    Verified v;
    v.ex = std::move(*ex);
    auto index = parseIndex(v.ex.indexJson);
    if (!index) return std::move(index).error();
    auto sel = selectManifest(*index, platform);
    if (!sel) return std::move(sel).error();
    v.entry = *sel;
    Descriptor d = *sel;
    for (int depth = 0; d.mediaType == kMediaTypeIndex || d.mediaType == kMediaTypeDockerList; ++depth) {
        if (depth >= 4) return RunnerError(ErrorKind::kCorruptData, "indexes nested too deeply", d.digest);
        auto text = readBlob(v.ex, d, "index");
        if (!text) return std::move(text).error();
        auto nested = parseIndex(*text);
        if (!nested) return std::move(nested).error();
        auto next = selectManifest(*nested, platform);
        if (!next) return std::move(next).error();
        d = *next;
    }
    v.manifestDesc = d;
    auto mtext = readBlob(v.ex, d, "manifest");
    if (!mtext) return std::move(mtext).error();
    auto manifest = parseManifest(*mtext);
    if (!manifest) return std::move(manifest).error();
    v.manifest = std::move(*manifest);
    v.manifestJson = std::move(*mtext);
    auto ctext = readBlob(v.ex, v.manifest.config, "config");
    if (!ctext) return std::move(ctext).error();
    auto config = parseConfig(*ctext);
    if (!config) return std::move(config).error();
    v.config = std::move(*config);
    v.configJson = std::move(*ctext);
    if (!platformMatches(v.config.platform, platform))
        return RunnerError(ErrorKind::kNoMatchingPlatform,
                           "image is for " + v.config.platform.os + "/" + v.config.platform.architecture + ", host is " +
                               platform.os + "/" + platform.architecture);
    if (v.config.diffIds.size() != v.manifest.layers.size())
        return RunnerError(ErrorKind::kCorruptData, "config lists " + std::to_string(v.config.diffIds.size()) +
                                                        " diff_ids for " + std::to_string(v.manifest.layers.size()) +
                                                        " layers");
    for (const auto& l : v.manifest.layers) BERTH_OCI_TRY(verifyBlob(v.ex, l, "layer"));
    return v;
}

// Removes a staging directory on scope exit.
class Staging {
public:
    explicit Staging(std::string path) : path_(std::move(path)) {}
    ~Staging() {
        if (!path_.empty()) (void)removeTree(path_);
    }
    Staging(const Staging&) = delete;
    Staging& operator=(const Staging&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

class StoreLock {
public:
    explicit StoreLock(const std::string& root)
        : fd_(::open((root + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)) {
        if (fd_) {
            while (::flock(fd_.get(), LOCK_EX) != 0 && errno == EINTR) {
            }
        }
    }
    bool ok() const { return fd_.valid(); }

private:
    UniqueFd fd_;  // closing releases the lock
};

std::mutex& storeMutex() {  // flock is per open file description; threads also need exclusion
    static std::mutex mu;
    return mu;
}

std::int64_t unixNow() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A local archive is opened once, O_NOFOLLOW | O_NONBLOCK (a FIFO or device must not
// block the worker), checked to be a regular file through the fd, and read through
// /proc/self/fd/N of that fd, so what was checked is what is read. One error text
// whether the file is missing, unreadable, a link or not a regular file: a caller
// learns nothing about the host's files from the difference.
RunnerResult<std::string> openLocalArchive(const PullRequest& req, const std::string& path, UniqueFd* keep,
                                           PullStats* stats) {
    RunnerError refused(ErrorKind::kNotFound,
                        "not a readable regular file in a directory allowed for file: URLs", req.fetch.url);
    const auto& dirs = req.fetch.fileDirectories;
    if (dirs && dirs->empty())
        return RunnerError(ErrorKind::kInvalidArgument, "file: URLs and local paths are not enabled here", req.fetch.url);
    UniqueFd fd;
    constexpr int kFlags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
    if (dirs) {
        const std::string* best = nullptr;
        for (const auto& d : *dirs)
            if (pathIsBelow(d, path) && (!best || d.size() > best->size())) best = &d;
        if (!best) return refused;
        BeneathResult r = openBeneath(*best, path, kFlags);
        if (!r) return refused;
        fd = std::move(r.fd);
    } else {
        fd = UniqueFd(::open(path.c_str(), kFlags | O_CLOEXEC));
        if (!fd) return refused;
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return refused;
    if (stats) stats->downloadedBytes = static_cast<std::uint64_t>(st.st_size);
    *keep = std::move(fd);
    return "/proc/self/fd/" + std::to_string(keep->get());
}

RunnerResult<std::string> resolveArchive(const PullRequest& req, const std::string& staging, const CancelToken* cancel,
                                         PullStats* stats, UniqueFd* keep) {
    if (auto local = localPathOfUrl(req.fetch.url)) return openLocalArchive(req, *local, keep, stats);
    std::string path = staging + "/archive";
    auto r = fetchToFile(req.fetch, path, cancel);
    if (!r) return std::move(r).error();
    if (stats) stats->downloadedBytes = r->bytes;
    return path;
}

// A registry pull writes the manifest, config and the layer blobs the store lacks
// into the staging blob directory, each checked against its digest, so the rest
// of pull() treats it like an extracted archive. Partial blob downloads live in
// tmp/partial (kept by open()) so that a pull resumes them after a restart.
RunnerResult<Verified> pullFromRegistry(const PullRequest& req, const std::string& root, const std::string& staging,
                                        const CancelToken* cancel, PullStats* stats) {
    RegistryPullOptions o;
    o.fetch = req.fetch;
    o.platform = req.platform;
    o.outDir = staging + "/blobs";
    o.partialDir = root + "/tmp/partial";
    BERTH_OCI_TRY(detail::makeDirs(o.outDir));
    BERTH_OCI_TRY(detail::makeDirs(o.partialDir, true));
    o.haveLayer = [&root](const std::string& diffId) {
        struct stat st {};
        return ::stat((root + "/layers/" + digestHex(diffId)).c_str(), &st) == 0;
    };
    RegistryStats rs;
    auto img = fetchRegistryImage(o, cancel, &rs);
    if (stats) {
        stats->downloadedBytes = rs.bytesTransferred;
        stats->resumedBytes = rs.blobBytesResumed;
    }
    if (!img) return std::move(img).error();
    Verified v;
    v.ex.blobDir = o.outDir;
    v.entry = img->entry;
    v.manifestDesc = img->manifestDesc;
    v.manifest = std::move(img->manifest);
    v.config = std::move(img->config);
    v.manifestJson = std::move(img->manifestJson);
    v.configJson = std::move(img->configJson);
    return v;
}

json platformJson(const Platform& p) { return json{{"os", p.os}, {"architecture", p.architecture}, {"variant", p.variant}}; }

}  // namespace

std::string imageRecordToJson(const ImageRecord& r) {
    json j;
    j["manifestDigest"] = r.manifestDigest;
    j["configDigest"] = r.configDigest;
    j["sourceUrl"] = r.sourceUrl;
    j["diffIds"] = r.diffIds;
    j["unpackedBytes"] = r.unpackedBytes;
    j["pulledAt"] = r.pulledAt;
    j["platform"] = platformJson(r.config.platform);
    j["metadata"] = json{{"name", r.metadata.name},          {"refName", r.metadata.refName},
                         {"vendor", r.metadata.vendor},      {"version", r.metadata.version},
                         {"description", r.metadata.description}, {"url", r.metadata.url},
                         {"source", r.metadata.source},      {"created", r.metadata.created},
                         {"annotations", r.metadata.annotations}};
    return j.dump(2);
}

RunnerResult<ImageRecord> imageRecordFromJson(std::string_view text) {
    json j = json::parse(text.begin(), text.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) return RunnerError(ErrorKind::kCorruptData, "image record is not JSON");
    ImageRecord r;
    try {
        r.manifestDigest = j.at("manifestDigest").get<std::string>();
        r.configDigest = j.at("configDigest").get<std::string>();
        r.sourceUrl = j.value("sourceUrl", "");
        r.diffIds = j.at("diffIds").get<std::vector<std::string>>();
        r.unpackedBytes = j.value("unpackedBytes", std::uint64_t{0});
        r.pulledAt = j.value("pulledAt", std::int64_t{0});
        const auto& m = j.at("metadata");
        r.metadata.name = m.value("name", "");
        r.metadata.refName = m.value("refName", "");
        r.metadata.vendor = m.value("vendor", "");
        r.metadata.version = m.value("version", "");
        r.metadata.description = m.value("description", "");
        r.metadata.url = m.value("url", "");
        r.metadata.source = m.value("source", "");
        r.metadata.created = m.value("created", "");
        r.metadata.annotations = m.value("annotations", std::map<std::string, std::string>{});
    } catch (const json::exception& e) {
        return RunnerError(ErrorKind::kCorruptData, std::string("image record: ") + e.what());
    }
    return r;
}

namespace {

std::string idMapText(const IdMapping& m) { return std::to_string(m.hostBase) + " " + std::to_string(m.size) + "\n"; }

// Owners of the tree under `dir` from mapping `from` to mapping `to` (nftw keeps
// no per-call state, hence the statics; callers hold storeMutex()).
IdMapping gShiftFrom, gShiftTo;
int gShiftErrno = 0;

int shiftOne(const char* path, const struct stat* st, int, FTW*) {
    auto shift = [](std::uint32_t id) -> std::uint32_t {
        std::uint32_t c = id;
        if (gShiftFrom.enabled()) {
            if (id < gShiftFrom.hostBase || id - gShiftFrom.hostBase >= gShiftFrom.size) return id;
            c = id - gShiftFrom.hostBase;
        }
        auto h = gShiftTo.toHost(c);
        return h ? *h : id;
    };
    std::uint32_t u = shift(st->st_uid), g = shift(st->st_gid);
    if ((u != st->st_uid || g != st->st_gid) && ::lchown(path, u, g) != 0) {
        gShiftErrno = errno;
        return 1;
    }
    // chown drops setuid/setgid bits of regular files: put them back.
    if (S_ISREG(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID))) ::chmod(path, st->st_mode & 07777);
    return 0;
}

RunnerStatus shiftOwners(const std::string& dir, const IdMapping& from, const IdMapping& to) {
    gShiftFrom = from;
    gShiftTo = to;
    gShiftErrno = 0;
    if (::nftw(dir.c_str(), shiftOne, 32, FTW_PHYS) != 0)
        return errnoError("chown", gShiftErrno ? gShiftErrno : errno, dir);
    return {};
}

}  // namespace

RunnerResult<std::unique_ptr<ImageStore>> ImageStore::open(const std::string& root, UnpackLimits limits) {
    for (const char* sub : {"/blobs/sha256", "/layers", "/images", "/tmp"})
        BERTH_OCI_TRY(detail::makeDirs(root + sub));
    {
        std::lock_guard<std::mutex> g(storeMutex());
        StoreLock lock(root);
        // Staging left by a crash: nothing in it was committed.
        UniqueFd tmp(::open((root + "/tmp").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (tmp) (void)detail::clearDirectory(tmp.get(), {"partial"});  // partial downloads resume
        // The owner mapping the stored layers were unpacked with ("<hostBase> <size>";
        // missing: a store from before mappings, unshifted). When the execution
        // environment's mapping changed, the layers are re-owned to match.
        IdMapping stored;
        auto text = detail::readSmallFile(root + "/idmap", 64);
        if (text) {
            unsigned long long base = 0, size = 0;
            if (std::sscanf(text->c_str(), "%llu %llu", &base, &size) == 2 && base <= 0xFFFFFFFFull &&
                size <= 0xFFFFFFFFull) {
                stored.hostBase = static_cast<std::uint32_t>(base);
                stored.size = static_cast<std::uint32_t>(size);
            }
        }
        if (!limits.owners) {
            limits.owners = stored;
        } else if (!text || stored.hostBase != limits.owners->hostBase || stored.size != limits.owners->size) {
            if (text || limits.owners->enabled()) {
                BERTH_LOG_INFO("oci") << "re-owning the layers of " << root << " for id map "
                                      << limits.owners->hostBase << "+" << limits.owners->size;
                BERTH_OCI_TRY(shiftOwners(root + "/layers", stored, *limits.owners));
            }
            BERTH_OCI_TRY(detail::writeFileAtomic(root + "/idmap", idMapText(*limits.owners)));
        }
    }
    return std::unique_ptr<ImageStore>(new ImageStore(root, limits));
}

RunnerResult<ImageRecord> ImageStore::pull(const PullRequest& req, const CancelToken* cancel, PullStats* stats) {
    PullStats localStats;
    if (!stats) stats = &localStats;
    Staging staging(root_ + "/tmp/pull-" + detail::randomToken());
    BERTH_OCI_TRY(detail::makeDirs(staging.path(), true));
    UniqueFd localArchive;  // a local archive, read through /proc/self/fd while open
    std::string archiveFile;
    auto v = [&]() -> RunnerResult<Verified> {
        if (isRegistryUrl(req.fetch.url)) return pullFromRegistry(req, root_, staging.path(), cancel, stats);
        auto archivePath = resolveArchive(req, staging.path(), cancel, stats, &localArchive);
        if (!archivePath) return std::move(archivePath).error();
        archiveFile = *archivePath;
        return openVerified(*archivePath, staging.path(), req.platform, limits_, cancel);
    }();
    if (!v) return std::move(v).error();
    if (archiveFile == staging.path() + "/archive") ::unlink(archiveFile.c_str());  // blobs are extracted now

    ImageRecord rec;
    rec.manifestDigest = v->manifestDesc.digest;
    rec.configDigest = v->manifest.config.digest;
    rec.sourceUrl = req.fetch.url;
    rec.config = v->config;
    rec.metadata = extractMetadata(v->manifest, v->entry, v->config);
    rec.diffIds = v->config.diffIds;
    rec.pulledAt = unixNow();

    std::string stagedLayers = staging.path() + "/layers";
    BERTH_OCI_TRY(detail::makeDirs(stagedLayers));
    UnpackBudget budget;
    std::set<std::string> staged;
    for (std::size_t i = 0; i < v->manifest.layers.size(); ++i) {
        const auto& desc = v->manifest.layers[i];
        std::string hex = digestHex(rec.diffIds[i]);
        std::string blob = v->ex.blobDir + "/" + digestHex(desc.digest);
        struct stat st {};
        if (::stat((root_ + "/layers/" + hex).c_str(), &st) == 0 || staged.count(hex)) {
            // Already stored: the blob digest is verified and the config binds it to
            // this diff_id, so unpacking it again would only re-check the store.
            ++stats->layersShared;
            continue;
        }
        std::string dir = stagedLayers + "/" + hex;
        if (::mkdir(dir.c_str(), 0755) != 0) return errnoError("mkdir", errno, dir);
        if (limits_.ownerMap().enabled() && ::chown(dir.c_str(), limits_.ownerMap().hostBase, limits_.ownerMap().hostBase) != 0 &&
            errno != EPERM)
            return errnoError("chown", errno, dir);
        auto comp = layerCompression(desc.mediaType);
        if (!comp) return std::move(comp).error();
        auto ls = applyLayer(LayerSource{blob, *comp, rec.diffIds[i]}, dir, WhiteoutMode::kOverlay, limits_, budget,
                             cancel);
        if (!ls) return std::move(ls).error();
        ::unlink(blob.c_str());
        staged.insert(hex);
        ++stats->layersUnpacked;
    }
    rec.unpackedBytes = budget.bytes;

    // Commit: layers, then blobs, then the record that makes the image visible.
    std::lock_guard<std::mutex> g(storeMutex());
    StoreLock lock(root_);
    if (!lock.ok()) return errnoError("lock store", errno, root_);
    if (req.admit) BERTH_OCI_TRY(req.admit(rec));  // commits are serialised: one decision at a time
    for (const auto& hex : staged) {
        std::string from = stagedLayers + "/" + hex, to = root_ + "/layers/" + hex;
        if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOTEMPTY && errno != EEXIST)
            return errnoError("rename", errno, to);
    }
    for (const auto& digest : {rec.manifestDigest, rec.configDigest}) {
        std::string from = v->ex.blobDir + "/" + digestHex(digest), to = root_ + "/blobs/sha256/" + digestHex(digest);
        if (::rename(from.c_str(), to.c_str()) != 0) return errnoError("rename", errno, to);
    }
    BERTH_OCI_TRY(detail::writeFileAtomic(root_ + "/images/" + digestHex(rec.manifestDigest) + ".json",
                                          imageRecordToJson(rec)));
    BERTH_LOG_INFO("oci") << "stored image " << rec.manifestDigest << " (" << rec.metadata.name << ") from "
                          << req.fetch.url;
    return rec;
}

RunnerResult<ImageRecord> ImageStore::get(const std::string& ref) const {
    std::string hex = ref.rfind("sha256:", 0) == 0 ? ref.substr(7) : ref;
    if (hex.size() < 6 || hex.find('/') != std::string::npos || hex.find('.') != std::string::npos)
        return RunnerError(ErrorKind::kInvalidArgument, "image reference must be a digest or a hex prefix of 6+ chars", ref);
    std::string found;
    if (hex.size() == 64) {
        found = hex;
    } else {
        auto all = list();
        if (!all) return std::move(all).error();
        for (const auto& r : *all) {
            if (digestHex(r.manifestDigest).rfind(hex, 0) == 0) {
                if (!found.empty()) return RunnerError(ErrorKind::kInvalidArgument, "ambiguous image prefix", ref);
                found = digestHex(r.manifestDigest);
            }
        }
        if (found.empty()) return RunnerError(ErrorKind::kNotFound, "no such image", ref);
    }
    auto text = detail::readSmallFile(root_ + "/images/" + found + ".json");
    if (!text) {
        if (text.error().kind == ErrorKind::kNotFound) return RunnerError(ErrorKind::kNotFound, "no such image", ref);
        return std::move(text).error();
    }
    auto rec = imageRecordFromJson(*text);
    if (!rec) return std::move(rec).error();
    auto cfg = detail::readSmallFile(root_ + "/blobs/sha256/" + digestHex(rec->configDigest));
    if (!cfg) return std::move(cfg).error();
    auto parsed = parseConfig(*cfg);
    if (!parsed) return std::move(parsed).error();
    rec->config = std::move(*parsed);
    return rec;
}

RunnerResult<std::vector<ImageRecord>> ImageStore::list() const {
    std::vector<ImageRecord> out;
    DIR* d = ::opendir((root_ + "/images").c_str());
    if (!d) return errnoError("opendir", errno, root_ + "/images");
    std::unique_ptr<DIR, int (*)(DIR*)> guard(d, ::closedir);
    std::vector<std::string> hexes;
    while (dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n.size() == 69 && n.compare(64, 5, ".json") == 0) hexes.push_back(n.substr(0, 64));
    }
    for (const auto& h : hexes) {
        auto r = get(h);
        if (r) out.push_back(std::move(*r));
        else BERTH_LOG_WARN("oci") << "unreadable image record " << h << ": " << r.error().describe();
    }
    return out;
}

std::vector<std::string> ImageStore::layerDirs(const ImageRecord& image) const {
    std::vector<std::string> dirs;
    for (const auto& id : image.diffIds) dirs.push_back(root_ + "/layers/" + digestHex(id));
    return dirs;
}

RunnerResult<int> ImageStore::layerRefCount(const std::string& diffId) const {
    auto all = list();
    if (!all) return std::move(all).error();
    int n = 0;
    for (const auto& r : *all)
        for (const auto& id : r.diffIds)
            if (id == diffId) {
                ++n;
                break;
            }
    return n;
}

RunnerStatus ImageStore::remove(const std::string& ref) {
    auto rec = get(ref);
    if (!rec) return std::move(rec).error();
    {
        std::lock_guard<std::mutex> g(storeMutex());
        StoreLock lock(root_);
        std::string path = root_ + "/images/" + digestHex(rec->manifestDigest) + ".json";
        if (::unlink(path.c_str()) != 0) return errnoError("unlink", errno, path);
    }
    auto freed = collectGarbage();
    if (!freed) return std::move(freed).error();
    return {};
}

RunnerResult<std::uint64_t> ImageStore::collectGarbage() {
    std::lock_guard<std::mutex> g(storeMutex());
    StoreLock lock(root_);
    std::set<std::string> liveLayers, liveBlobs;
    DIR* d = ::opendir((root_ + "/images").c_str());
    if (!d) return errnoError("opendir", errno, root_ + "/images");
    {
        std::unique_ptr<DIR, int (*)(DIR*)> guard(d, ::closedir);
        while (dirent* e = ::readdir(d)) {
            std::string n = e->d_name;
            if (n.size() != 69 || n.compare(64, 5, ".json") != 0) continue;
            auto text = detail::readSmallFile(root_ + "/images/" + n);
            if (!text) continue;
            auto rec = imageRecordFromJson(*text);
            if (!rec) continue;  // keep what an unreadable record may name? It names nothing we can read.
            liveBlobs.insert(digestHex(rec->manifestDigest));
            liveBlobs.insert(digestHex(rec->configDigest));
            for (const auto& id : rec->diffIds) liveLayers.insert(digestHex(id));
        }
    }
    std::uint64_t freed = 0;
    auto sweep = [&](const std::string& dir, const std::set<std::string>& live) -> RunnerStatus {
        DIR* dd = ::opendir(dir.c_str());
        if (!dd) return errnoError("opendir", errno, dir);
        std::vector<std::string> dead;
        {
            std::unique_ptr<DIR, int (*)(DIR*)> guard(dd, ::closedir);
            while (dirent* e = ::readdir(dd)) {
                std::string n = e->d_name;
                if (n == "." || n == "..") continue;
                if (!live.count(n)) dead.push_back(n);
            }
        }
        for (const auto& n : dead) {
            freed += detail::diskUsage(dir + "/" + n);
            BERTH_OCI_TRY(removeTree(dir + "/" + n));
        }
        return {};
    };
    BERTH_OCI_TRY(sweep(root_ + "/layers", liveLayers));
    BERTH_OCI_TRY(sweep(root_ + "/blobs/sha256", liveBlobs));
    // Partial registry downloads nobody resumed within a day.
    if (DIR* pd = ::opendir((root_ + "/tmp/partial").c_str())) {
        std::unique_ptr<DIR, int (*)(DIR*)> guard(pd, ::closedir);
        std::vector<std::string> stale;
        while (dirent* e = ::readdir(pd)) {
            std::string p = root_ + "/tmp/partial/" + e->d_name;
            struct stat st {};
            if (e->d_name[0] != '.' && ::stat(p.c_str(), &st) == 0 && st.st_mtime + 86400 < unixNow()) stale.push_back(p);
        }
        for (const auto& p : stale) {
            freed += detail::diskUsage(p);
            ::unlink(p.c_str());
        }
    }
    return freed;
}

RunnerResult<ImageRecord> unpackArchive(const std::string& archivePath, const std::string& destDir,
                                        const UnpackLimits& limits, const Platform& platform,
                                        const CancelToken* cancel) {
    struct stat st {};
    if (::lstat(destDir.c_str(), &st) == 0)
        return RunnerError(ErrorKind::kConflict, "destination already exists", destDir);
    auto slash = destDir.find_last_of('/');
    std::string parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : destDir.substr(0, slash));
    Staging staging(parent + "/.berth-unpack-" + detail::randomToken());
    BERTH_OCI_TRY(detail::makeDirs(staging.path(), true));
    auto v = openVerified(archivePath, staging.path(), platform, limits, cancel);
    if (!v) return std::move(v).error();
    std::string rootfs = staging.path() + "/rootfs";
    if (::mkdir(rootfs.c_str(), 0755) != 0) return errnoError("mkdir", errno, rootfs);
    if (limits.ownerMap().enabled() && ::chown(rootfs.c_str(), limits.ownerMap().hostBase, limits.ownerMap().hostBase) != 0 &&
        errno != EPERM)
        return errnoError("chown", errno, rootfs);
    UnpackBudget budget;
    for (std::size_t i = 0; i < v->manifest.layers.size(); ++i) {
        const auto& desc = v->manifest.layers[i];
        auto comp = layerCompression(desc.mediaType);
        if (!comp) return std::move(comp).error();
        std::string blob = v->ex.blobDir + "/" + digestHex(desc.digest);
        auto ls = applyLayer(LayerSource{blob, *comp, v->config.diffIds[i]}, rootfs, WhiteoutMode::kApply, limits,
                             budget, cancel);
        if (!ls) return std::move(ls).error();
    }
    if (::rename(rootfs.c_str(), destDir.c_str()) != 0) return errnoError("rename", errno, destDir);
    ImageRecord rec;
    rec.manifestDigest = v->manifestDesc.digest;
    rec.configDigest = v->manifest.config.digest;
    rec.sourceUrl = archivePath;
    rec.config = v->config;
    rec.metadata = extractMetadata(v->manifest, v->entry, v->config);
    rec.diffIds = v->config.diffIds;
    rec.unpackedBytes = budget.bytes;
    rec.pulledAt = unixNow();
    return rec;
}

}  // namespace berth::oci
