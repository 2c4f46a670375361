// berth_lazy_libs (cmake/BerthLazyLibs.cmake): this program links the trampolines, not
// libcurl or libarchive, so every curl_* and archive_* call below goes through them.
#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

bool mapped(const std::string& soname) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("/" + soname) != std::string::npos) return true;
  }
  return false;
}

size_t collect(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

struct TempFile {
  std::string path;
  explicit TempFile(const std::string& content) {
    char tmpl[] = "/tmp/berth-lazy-XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    path = tmpl;
    REQUIRE(write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
    close(fd);
  }
  ~TempFile() { unlink(path.c_str()); }
};

}  // namespace

TEST_CASE("libcurl is loaded by its first call, not at program start", "[lazy-libs]") {
  // Catch runs each test case in a process of its own under ctest; run alone, this one
  // comes first.
  REQUIRE_FALSE(mapped("libcurl.so.4"));
  REQUIRE(std::string(curl_version()).rfind("libcurl/", 0) == 0);
  CHECK(mapped("libcurl.so.4"));
}

TEST_CASE("libarchive is loaded by its first call, not at program start", "[lazy-libs]") {
  REQUIRE_FALSE(mapped("libarchive.so.13"));
  CHECK(archive_version_number() >= 3000000);
  CHECK(mapped("libarchive.so.13"));
}

TEST_CASE("curl_easy_setopt and curl_easy_getinfo pass their variadic arguments through the trampolines",
          "[lazy-libs]") {
  const std::string body(100000, 'x');
  TempFile file(body);
  CURL* curl = curl_easy_init();
  REQUIRE(curl != nullptr);
  std::string got;
  const std::string url = "file://" + file.path;
  // One option of each argument type: string, long, function pointer, data pointer,
  // curl_off_t.
  REQUIRE(curl_easy_setopt(curl, CURLOPT_URL, url.c_str()) == CURLE_OK);
  REQUIRE(curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 1L) == CURLE_OK);
  REQUIRE(curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect) == CURLE_OK);
  REQUIRE(curl_easy_setopt(curl, CURLOPT_WRITEDATA, &got) == CURLE_OK);
  REQUIRE(curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(1) << 40) == CURLE_OK);
  REQUIRE(curl_easy_perform(curl) == CURLE_OK);
  CHECK(got == body);
  curl_off_t size = 0;
  REQUIRE(curl_easy_getinfo(curl, CURLINFO_SIZE_DOWNLOAD_T, &size) == CURLE_OK);
  CHECK(size == static_cast<curl_off_t>(body.size()));
  double seconds = -1;
  REQUIRE(curl_easy_getinfo(curl, CURLINFO_TOTAL_TIME, &seconds) == CURLE_OK);
  CHECK(seconds >= 0);

  // A curl_off_t offset, set through the same variadic path, is honoured.
  got.clear();
  REQUIRE(curl_easy_setopt(curl, CURLOPT_RESUME_FROM_LARGE, static_cast<curl_off_t>(body.size() - 10)) ==
          CURLE_OK);
  REQUIRE(curl_easy_perform(curl) == CURLE_OK);
  CHECK(got == std::string(10, 'x'));
  // And an error comes back with libcurl's text for it.
  REQUIRE(curl_easy_setopt(curl, CURLOPT_URL, "file:///nonexistent/berth-lazy") == CURLE_OK);
  const CURLcode rc = curl_easy_perform(curl);
  CHECK(rc == CURLE_FILE_COULDNT_READ_FILE);
  CHECK(std::string(curl_easy_strerror(rc)).find("file") != std::string::npos);
  curl_easy_cleanup(curl);
}

TEST_CASE("libarchive through the trampolines writes a gzip tar and reads it back", "[lazy-libs]") {
  std::vector<char> buf(1 << 16);
  size_t used = 0;
  const std::string content = "hello from a lazily loaded libarchive\n";
  {
    archive* a = archive_write_new();
    REQUIRE(archive_write_add_filter_gzip(a) == ARCHIVE_OK);
    REQUIRE(archive_write_set_format_pax_restricted(a) == ARCHIVE_OK);
    REQUIRE(archive_write_set_filter_option(a, "gzip", "compression-level", "9") == ARCHIVE_OK);
    REQUIRE(archive_write_open_memory(a, buf.data(), buf.size(), &used) == ARCHIVE_OK);
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, "dir/file.txt");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0640);
    archive_entry_set_size(e, static_cast<la_int64_t>(content.size()));
    archive_entry_set_mtime(e, 1234567890, 5);
    REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
    REQUIRE(archive_write_data(a, content.data(), content.size()) == static_cast<la_ssize_t>(content.size()));
    archive_entry_free(e);
    REQUIRE(archive_write_close(a) == ARCHIVE_OK);
    archive_write_free(a);
  }
  REQUIRE(used > 0);
  REQUIRE(static_cast<unsigned char>(buf[0]) == 0x1f);  // gzip magic

  archive* r = archive_read_new();
  archive_read_support_filter_gzip(r);
  archive_read_support_format_tar(r);
  REQUIRE(archive_read_open_memory(r, buf.data(), used) == ARCHIVE_OK);
  archive_entry* e = nullptr;
  REQUIRE(archive_read_next_header(r, &e) == ARCHIVE_OK);
  CHECK(std::string(archive_entry_pathname(e)) == "dir/file.txt");
  CHECK(archive_entry_perm(e) == 0640);
  CHECK(archive_entry_mtime(e) == 1234567890);
  std::string read(content.size() + 10, '\0');
  const la_ssize_t n = archive_read_data(r, read.data(), read.size());
  REQUIRE(n == static_cast<la_ssize_t>(content.size()));
  read.resize(static_cast<size_t>(n));
  CHECK(read == content);
  CHECK(archive_read_next_header(r, &e) == ARCHIVE_EOF);
  // An error string set through the variadic archive_set_error comes back formatted.
  archive_set_error(r, 22, "bad %s number %d", "layer", 7);
  CHECK(std::string(archive_error_string(r)) == "bad layer number 7");
  archive_read_free(r);
}

TEST_CASE("Threads making the first call of a function at the same time all reach the library",
          "[lazy-libs]") {
  std::atomic<int> go{0};
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      while (go.load() == 0) {
      }
      const curl_version_info_data* info = curl_version_info(CURLVERSION_NOW);
      if (info != nullptr && info->version != nullptr &&
          std::string(archive_version_string()).rfind("libarchive", 0) == 0) {
        ok.fetch_add(1);
      }
    });
  }
  go.store(1);
  for (auto& t : threads) t.join();
  CHECK(ok.load() == 8);
}
