#ifndef ENVSYNC_SERVICE_MAIL_H_
#define ENVSYNC_SERVICE_MAIL_H_

#include <functional>
#include <string>

#include "envsync/core/config.h"
#include "envsync/core/status.h"
#include "envsync/store/state_store.h"

namespace envsync::service {

// One e-mail: a plain-text and an HTML part.
struct Mail {
  std::string to;
  std::string subject;
  std::string text;
  std::string html;
};

// The mail that goes with a message: its title as the subject, its body and a link to
// `<base_url><link_path>` in both parts.
Mail MailFor(const store::Message& message, const MailConfig& config, const std::string& link_path);

// The RFC 5322 text of `mail` (multipart/alternative, UTF-8, CRLF line ends).
std::string ComposeEml(const Mail& mail, const std::string& from, const std::string& date,
                       const std::string& message_id);

// Sends `mail` over SMTP (libcurl) when `config.smtp` is set, trying `attempts` times with a
// doubling pause (`pause(ms)`), else writes it as a `.eml` file into `config.outbox`. Returns
// where it went; Unavailable naming the server or the folder when it could not be delivered.
Result<std::string> Deliver(const MailConfig& config, const Mail& mail, int attempts,
                            const std::function<void(int)>& pause);

// True when `user` is an e-mail address mail can go to.
bool IsMailAddress(const std::string& user);

}  // namespace envsync::service

#endif  // ENVSYNC_SERVICE_MAIL_H_
