#include "berth/testing/mosquitto.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdexcept>

namespace berth::testing {

Mosquitto::Mosquitto(std::filesystem::path dir, int port, std::string extraConfig)
    : dir_(std::move(dir)), port_(port != 0 ? port : freeTcpPort()) {
    std::filesystem::create_directories(dir_);
    ::chmod(dir_.c_str(), 0755);
    conf_ = dir_ / "mosquitto.conf";
    logFile_ = dir_ / "mosquitto.log";
    writeFile(conf_, "persistence false\nallow_anonymous true\nlog_dest file " + logFile_.string() +
                         "\nlog_type all\nlog_timestamp_format %H:%M:%S\nlistener " + std::to_string(port_) +
                         " 127.0.0.1\n" + extraConfig + "\n");
    writeFile(logFile_, "");
    ::chmod(conf_.c_str(), 0644);
    ::chmod(logFile_.c_str(), 0666);
    if (passwd* pw = ::getpwnam("mosquitto")) (void)!::chown(logFile_.c_str(), pw->pw_uid, pw->pw_gid);
    start();
}

Mosquitto::~Mosquitto() {
    if (proc_) stop();
}

std::string Mosquitto::address() const { return "127.0.0.1:" + std::to_string(port_); }

pid_t Mosquitto::pid() const { return proc_ ? proc_->pid() : -1; }

bool Mosquitto::running() const { return proc_ && proc_->running(); }

void Mosquitto::start() {
    if (proc_ && proc_->running()) return;
    proc_ = ProcessGuard::start({"mosquitto", "-c", conf_.string()}, (dir_ / "mosquitto.out").string());
    bool listening = waitUntil([&] { return tcpPortOpen(port_) || !proc_->running(); }, std::chrono::seconds(10));
    if (!listening || !proc_->running())
        throw std::runtime_error("mosquitto did not start on port " + std::to_string(port_) + ": " +
                                 readFile(dir_ / "mosquitto.out") + readFile(logFile_));
}

void Mosquitto::stop() {
    if (!proc_) return;
    proc_->stop(std::chrono::seconds(5));
    proc_.reset();
}

std::string Mosquitto::log() const { return readFile(logFile_); }

}  // namespace berth::testing
