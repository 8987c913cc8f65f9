// What the service tests share: free loopback ports, a real SMTP sink (python3-aiosmtpd), and
// the real `envsync serve` run as a child process.
#ifndef ENVSYNC_TESTS_SERVICE_SERVICE_TEST_SUPPORT_H_
#define ENVSYNC_TESTS_SERVICE_SERVICE_TEST_SUPPORT_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/sync/compare_test_support.h"

namespace envsync::testing {

// A port nobody listens on right now.
inline int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

inline bool Accepts(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// Every mail file under `dir`, as text.
inline std::vector<std::string> Mails(const std::filesystem::path& dir) {
  std::vector<std::string> mails;
  if (!std::filesystem::exists(dir)) return mails;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) mails.push_back(ReadBytes(e.path()));
  }
  return mails;
}

// A child process, killed (SIGTERM) and reaped when it goes out of scope.
class Child {
 public:
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { Stop(SIGTERM); }

  // Runs `argv` with stdout to /dev/null, stderr to `err_path` and `env` added.
  void Start(const std::vector<std::string>& argv, const std::filesystem::path& err_path,
             const std::vector<std::pair<std::string, std::string>>& env = {}) {
    pid_ = fork();
    if (pid_ == 0) {
      for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
      if (!freopen("/dev/null", "w", stdout) || !freopen(err_path.c_str(), "a", stderr)) {
        _exit(126);
      }
      std::vector<std::string> copy = argv;
      std::vector<char*> raw;
      for (std::string& a : copy) raw.push_back(a.data());
      raw.push_back(nullptr);
      execv(raw[0], raw.data());
      _exit(127);
    }
  }
  // Sends `signal` and waits; returns the exit status, or -signal when it was killed.
  int Stop(int signal) {
    if (pid_ <= 0) return 0;
    kill(pid_, signal);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = 0;
    return WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
  }
  bool running() const { return pid_ > 0; }
  // Waits up to `ms` for the child to end by itself; its status as Stop returns it, or
  // nullopt while it still runs.
  std::optional<int> WaitFor(int ms) {
    for (int i = 0; i < ms / 10 && pid_ > 0; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
  }

 private:
  pid_t pid_ = 0;
};

// The SMTP sink: aiosmtpd's Mailbox handler writing into `maildir`. Returns its port, 0 when
// it did not start.
inline int StartSmtpSink(Child* child, const std::filesystem::path& maildir,
                         const std::filesystem::path& err_path) {
  const int port = FreePort();
  child->Start({"/usr/bin/python3", "-m", "aiosmtpd", "-n", "-l",
                "127.0.0.1:" + std::to_string(port), "-c", "aiosmtpd.handlers.Mailbox",
                maildir.string()},
               err_path);
  for (int i = 0; i < 200; ++i) {
    if (Accepts(port)) return port;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return 0;
}

// Points the demo config's mail at `url`, with links to `base_url`.
inline void UseSmtp(const std::filesystem::path& config, const std::string& url,
                    const std::string& base_url = "https://envsync.shop.example") {
  std::string text = ReadBytes(config);
  text.insert(text.find("[environments"), "[mail]\nsmtp = \"" + url +
                                              "\"\nfrom = \"envsync@shop.example\"\n"
                                              "base_url = \"" +
                                              base_url + "\"\n\n");
  WriteBytes(config, text);
}

}  // namespace envsync::testing

#endif  // ENVSYNC_TESTS_SERVICE_SERVICE_TEST_SUPPORT_H_
