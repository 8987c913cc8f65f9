#ifndef ENVSYNC_CORE_CONFIG_H_
#define ENVSYNC_CORE_CONFIG_H_

#include <map>
#include <string>
#include <string_view>

#include "envsync/core/status.h"

namespace envsync {

// Where one environment lives: its database (a SQLite path) and its assets folder.
struct EnvironmentConfig {
  std::string name;      // "PROD" or "TEST"
  std::string database;  // absolute path (relative ones are resolved against the config file)
  std::string assets;
  int line = 0;  // the config line of its [environments.NAME] table
};

// Where e-mail goes ([mail]): an SMTP server, or, without one, `.eml` files in `outbox`.
struct MailConfig {
  std::string smtp;       // smtp://host:port or smtps://user:password@host:port; "" = outbox
  bool starttls = false;  // require STARTTLS on smtp://
  std::string from = "envsync@localhost";
  std::string base_url = "http://127.0.0.1:8080";  // links in mails point here
  std::string outbox;                              // default: `outbox/` beside the state store
};

// envsync's configuration (SYNC-SEMANTICS §7): which environment envsync runs beside, where
// its own state lives, and the two environments.
struct Config {
  std::string source_name;  // the config file, for messages
  std::string home;
  std::string state;
  std::string manifest;  // a manifest file; empty = the built-in data/modules.toml
  std::map<std::string, EnvironmentConfig> environments;
  MailConfig mail;

  // The environment called `name`, or nullptr.
  const EnvironmentConfig* Find(std::string_view name) const;
};

// Parses config text. `base_dir` resolves relative paths. Errors are InvalidArgument and read
// `<source_name>:<line>: <what>`: TOML syntax, a missing or unknown field, an environment other
// than PROD and TEST, or a `home` that names no environment.
Result<Config> ParseConfig(std::string_view text, const std::string& source_name,
                           const std::string& base_dir);

// Reads and parses the config file at `path`. A missing or unreadable file is InvalidArgument
// naming the path.
Result<Config> LoadConfig(const std::string& path);

}  // namespace envsync

#endif  // ENVSYNC_CORE_CONFIG_H_
