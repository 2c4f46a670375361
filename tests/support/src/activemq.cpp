#include "berth/testing/activemq.h"

#include <stdexcept>

namespace berth::testing {
namespace {

constexpr const char* kActiveMqHome = "/usr/share/activemq";

std::string xmlEscape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            default: out += c;
        }
    }
    return out;
}

}  // namespace

std::string findJava() { return findProgram("java"); }

ActiveMq::ActiveMq(std::filesystem::path dir, ActiveMqOptions options)
    : dir_(std::move(dir)), options_(std::move(options)) {
    if (options_.stompPort == 0) options_.stompPort = freeTcpPort();
    if (options_.withSsl) {
        while (options_.sslPort == 0 || options_.sslPort == options_.stompPort) options_.sslPort = freeTcpPort();
        while (options_.mutualSslPort == 0 || options_.mutualSslPort == options_.stompPort ||
               options_.mutualSslPort == options_.sslPort)
            options_.mutualSslPort = freeTcpPort();
    }
    for (const char* sub : {"conf", "data", "tmp"}) std::filesystem::create_directories(dir_ / sub);
    std::string connectors = "      <transportConnector name=\"stomp\" uri=\"stomp://127.0.0.1:" +
                             std::to_string(options_.stompPort) + "\"/>\n";
    std::string ssl;
    if (options_.withSsl) {
        connectors += "      <transportConnector name=\"stomp+ssl\" uri=\"stomp+ssl://127.0.0.1:" +
                      std::to_string(options_.sslPort) + "\"/>\n";
        connectors += "      <transportConnector name=\"stomp+ssl+mutual\" uri=\"stomp+ssl://127.0.0.1:" +
                      std::to_string(options_.mutualSslPort) + "?needClientAuth=true\"/>\n";
        ssl = "    <sslContext>\n      <sslContext keyStore=\"file:" + xmlEscape(options_.keyStore) +
              "\" keyStorePassword=\"" + xmlEscape(options_.keyStorePassword) + "\" keyStoreType=\"pkcs12\"";
        if (!options_.trustStore.empty())
            ssl += " trustStore=\"file:" + xmlEscape(options_.trustStore) + "\" trustStorePassword=\"" +
                   xmlEscape(options_.trustStorePassword) + "\" trustStoreType=\"pkcs12\"";
        ssl += "/>\n    </sslContext>\n";
    }
    writeFile(dir_ / "conf" / "activemq.xml",
              "<beans xmlns=\"http://www.springframework.org/schema/beans\"\n"
              "       xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"\n"
              "       xsi:schemaLocation=\"http://www.springframework.org/schema/beans "
              "http://www.springframework.org/schema/beans/spring-beans.xsd "
              "http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd\">\n"
              "  <broker xmlns=\"http://activemq.apache.org/schema/core\" brokerName=\"berth-test\" "
              "useJmx=\"false\" persistent=\"false\">\n" +
                  ssl + "    <transportConnectors>\n" + connectors +
                  "    </transportConnectors>\n  </broker>\n</beans>\n");
    start();
}

ActiveMq::~ActiveMq() {
    if (proc_) stop();
}

pid_t ActiveMq::pid() const { return proc_ ? proc_->pid() : -1; }

bool ActiveMq::running() const { return proc_ && proc_->running(); }

void ActiveMq::start() {
    if (proc_ && proc_->running()) return;
    const std::string java = findJava();
    if (java.empty()) throw std::runtime_error("java is not installed (apt-get install activemq)");
    if (!std::filesystem::exists(std::string(kActiveMqHome) + "/bin/activemq.jar"))
        throw std::runtime_error("ActiveMQ is not installed (apt-get install activemq)");
    const std::string d = dir_.string();
    const auto begin = std::chrono::steady_clock::now();
    proc_ = ProcessGuard::start({java, "-Xms32m", "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                                 std::string("-Dactivemq.home=") + kActiveMqHome, "-Dactivemq.base=" + d,
                                 "-Dactivemq.conf=" + d + "/conf", "-Dactivemq.data=" + d + "/data",
                                 "-Djava.io.tmpdir=" + d + "/tmp", "-jar",
                                 std::string(kActiveMqHome) + "/bin/activemq.jar", "start",
                                 "xbean:file:" + d + "/conf/activemq.xml"},
                                (dir_ / "activemq.out").string());
    auto ready = [&] {
        return tcpPortOpen(options_.stompPort) &&
               (!options_.withSsl || (tcpPortOpen(options_.sslPort) && tcpPortOpen(options_.mutualSslPort)));
    };
    bool ok = waitUntil([&] { return ready() || !proc_->running(); }, std::chrono::seconds(60));
    if (!ok || !proc_->running())
        throw std::runtime_error("ActiveMQ did not start on port " + std::to_string(options_.stompPort) + ": " +
                                 readFile(dir_ / "activemq.out"));
    lastStart_ = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - begin);
}

void ActiveMq::stop() {
    if (!proc_) return;
    proc_->stop(std::chrono::seconds(10));
    proc_.reset();
}

void ActiveMq::kill9() {
    if (!proc_) return;
    proc_->kill9();
    proc_.reset();
}

std::string ActiveMq::log() const { return readFile(dir_ / "activemq.out"); }

}  // namespace berth::testing
