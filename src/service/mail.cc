#include "envsync/service/mail.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>

#include "store/shared_library.h"

namespace envsync::service {
namespace {

std::string HtmlEscape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

// Header text without line breaks, so a value can never add a header of its own.
std::string HeaderValue(const std::string& text) {
  std::string out;
  for (const char c : text) out.push_back(c == '\r' || c == '\n' ? ' ' : c);
  return out;
}

std::string RandomToken() {
  std::random_device device;
  std::mt19937_64 rng((static_cast<uint64_t>(device()) << 32) ^ device());
  return fmt::format("{:016x}", rng());
}

std::string Rfc5322Date() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[64];
  std::strftime(buffer, sizeof(buffer), "%a, %d %b %Y %H:%M:%S +0000", &tm);
  return buffer;
}

struct Upload {
  const std::string* data;
  size_t offset = 0;
};

size_t ReadUpload(char* buffer, size_t size, size_t count, void* user) {
  auto* upload = static_cast<Upload*>(user);
  const size_t room = size * count;
  const size_t left = upload->data->size() - upload->offset;
  const size_t n = left < room ? left : room;
  std::memcpy(buffer, upload->data->data() + upload->offset, n);
  upload->offset += n;
  return n;
}

// libcurl, loaded when the first mail is sent (store::SharedLibrary): most commands send none.
struct Curl {
  Status status;
  decltype(&::curl_easy_init) easy_init = nullptr;
  CURLcode (*easy_setopt)(CURL*, CURLoption, ...) = nullptr;
  decltype(&::curl_easy_perform) easy_perform = nullptr;
  decltype(&::curl_easy_cleanup) easy_cleanup = nullptr;
  decltype(&::curl_easy_strerror) easy_strerror = nullptr;
  decltype(&::curl_slist_append) slist_append = nullptr;
  decltype(&::curl_slist_free_all) slist_free_all = nullptr;
};

// Never destroyed: a mail sent while the process ends still finds it.
const Curl& LoadedCurl() {
  static const Curl& curl = *new Curl([] {
    Curl c;
    auto so = store::SharedLibrary::Open("libcurl.so.4", "sending mail");
    if (!so.ok()) {
      c.status = so.status();
      return c;
    }
    for (Status taken :
         {so->Take("curl_easy_init", &c.easy_init), so->Take("curl_easy_setopt", &c.easy_setopt),
          so->Take("curl_easy_perform", &c.easy_perform),
          so->Take("curl_easy_cleanup", &c.easy_cleanup),
          so->Take("curl_easy_strerror", &c.easy_strerror),
          so->Take("curl_slist_append", &c.slist_append),
          so->Take("curl_slist_free_all", &c.slist_free_all)}) {
      if (c.status.ok()) c.status = taken;
    }
    return c;
  }());
  return curl;
}

// One attempt through `lib`, which Deliver has loaded.
Status SendSmtp(const Curl& lib, const MailConfig& config, const Mail& mail,
                const std::string& eml) {
  CURL* curl = lib.easy_init();
  if (curl == nullptr) return Status::Unavailable("cannot start libcurl");
  Upload upload{&eml};
  const std::string from = "<" + config.from + ">";
  curl_slist* recipients = lib.slist_append(nullptr, ("<" + mail.to + ">").c_str());
  lib.easy_setopt(curl, CURLOPT_URL, config.smtp.c_str());
  lib.easy_setopt(curl, CURLOPT_MAIL_FROM, from.c_str());
  lib.easy_setopt(curl, CURLOPT_MAIL_RCPT, recipients);
  // The read function as the pointer libcurl takes (curl_read_callback).
  lib.easy_setopt(curl, CURLOPT_READFUNCTION, static_cast<curl_read_callback>(ReadUpload));
  lib.easy_setopt(curl, CURLOPT_READDATA, &upload);
  lib.easy_setopt(curl, CURLOPT_UPLOAD, 1L);
  lib.easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 5L);
  lib.easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
  lib.easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  if (config.starttls) lib.easy_setopt(curl, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
  const CURLcode result = lib.easy_perform(curl);
  lib.slist_free_all(recipients);
  lib.easy_cleanup(curl);
  if (result != CURLE_OK) {
    // The URL may hold a password: name the server without it.
    std::string server = config.smtp;
    if (const size_t at = server.rfind('@'); at != std::string::npos) {
      server = server.substr(0, server.find("://") + 3) + server.substr(at + 1);
    }
    return Status::Unavailable(
        fmt::format("mail to {} via {} failed: {}", mail.to, server, lib.easy_strerror(result)));
  }
  return Status::Ok();
}

}  // namespace

bool IsMailAddress(const std::string& user) {
  const size_t at = user.find('@');
  return at != std::string::npos && at > 0 && user.find('.', at) != std::string::npos &&
         user.find_first_of(" <>\r\n\t,;") == std::string::npos;
}

Mail MailFor(const store::Message& message, const MailConfig& config,
             const std::string& link_path) {
  Mail mail;
  mail.to = message.user;
  mail.subject = message.title;
  const std::string link = config.base_url + link_path;
  mail.text = fmt::format("{}\r\n\r\n{}\r\n\r\nOpen: {}\r\n", message.title, message.body, link);
  mail.html = fmt::format(
      "<html><body><h2>{}</h2><p>{}</p><p><a href=\"{}\">Open in envsync</a></p></body></html>",
      HtmlEscape(message.title), HtmlEscape(message.body), HtmlEscape(link));
  return mail;
}

std::string ComposeEml(const Mail& mail, const std::string& from, const std::string& date,
                       const std::string& message_id) {
  const std::string boundary = "envsync-" + message_id;
  std::string eml;
  eml += "From: " + HeaderValue(from) + "\r\n";
  eml += "To: " + HeaderValue(mail.to) + "\r\n";
  eml += "Subject: " + HeaderValue(mail.subject) + "\r\n";
  eml += "Date: " + date + "\r\n";
  eml += "Message-ID: <" + message_id + "@envsync>\r\n";
  eml += "MIME-Version: 1.0\r\n";
  eml += "Content-Type: multipart/alternative; boundary=\"" + boundary + "\"\r\n\r\n";
  eml +=
      "--" + boundary + "\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + mail.text + "\r\n";
  eml +=
      "--" + boundary + "\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + mail.html + "\r\n";
  eml += "--" + boundary + "--\r\n";
  return eml;
}

Result<std::string> Deliver(const MailConfig& config, const Mail& mail, int attempts,
                            const std::function<void(int)>& pause) {
  const std::string id = RandomToken();
  const std::string eml = ComposeEml(mail, config.from, Rfc5322Date(), id);
  if (config.smtp.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(config.outbox, ec);
    const auto path = std::filesystem::path(config.outbox) / (id + ".eml");
    std::ofstream out(path, std::ios::binary);
    out << eml;
    out.close();
    if (!out) {
      return Status::Unavailable(
          fmt::format("cannot write mail to the outbox '{}'", config.outbox));
    }
    return path.string();
  }
  // Without libcurl no attempt can succeed: said at once, not after the pauses.
  const Curl& lib = LoadedCurl();
  if (!lib.status.ok()) {
    return Status::Unavailable(fmt::format("mail to {}: {}", mail.to, lib.status.message()));
  }
  Status status;
  int wait_ms = 500;
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    status = SendSmtp(lib, config, mail, eml);
    if (status.ok()) return std::string("sent to ") + mail.to;
    if (attempt < attempts) {
      pause(wait_ms);
      wait_ms *= 2;
    }
  }
  return status.WithContext(fmt::format("after {} attempts", attempts));
}

}  // namespace envsync::service
