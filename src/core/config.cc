#include "envsync/core/config.h"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace envsync {
namespace {

bool IsServerUri(const std::string& location) {
  return location.rfind("postgresql://", 0) == 0 || location.rfind("postgres://", 0) == 0;
}

std::string Resolve(const std::string& path, const std::string& base_dir) {
  if (IsServerUri(path)) return path;
  std::filesystem::path p(path);
  if (p.is_absolute() || base_dir.empty()) return p.lexically_normal().string();
  return (std::filesystem::path(base_dir) / p).lexically_normal().string();
}

int LineOf(const toml::node& node) { return static_cast<int>(node.source().begin.line); }

}  // namespace

const EnvironmentConfig* Config::Find(std::string_view name) const {
  auto it = environments.find(std::string(name));
  return it == environments.end() ? nullptr : &it->second;
}

Result<Config> ParseConfig(std::string_view text, const std::string& source_name,
                           const std::string& base_dir) {
  auto fail = [&](int line, const std::string& what) {
    return Status::InvalidArgument(fmt::format("{}:{}: {}", source_name, line, what));
  };
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& error) {
    return fail(static_cast<int>(error.source().begin.line), std::string(error.description()));
  }
  Config config;
  config.source_name = source_name;
  for (auto&& [key, node] : root) {
    const std::string_view k = key.str();
    if (k != "home" && k != "state" && k != "manifest" && k != "environments" && k != "mail") {
      return fail(LineOf(node), fmt::format("unknown setting '{}' (known: home, state, manifest, "
                                            "environments, mail)",
                                            k));
    }
  }
  auto read_string = [&](const toml::table& table, std::string_view field, const std::string& what,
                         bool required, std::string* out) -> Status {
    const toml::node* node = table.get(field);
    if (node == nullptr) {
      if (required) return fail(LineOf(table), fmt::format("{} lacks '{}'", what, field));
      return Status::Ok();
    }
    auto value = node->value<std::string>();
    if (!value || value->empty()) {
      return fail(LineOf(*node), fmt::format("'{}' must be a non-empty string", field));
    }
    *out = *value;
    return Status::Ok();
  };
  ENVSYNC_RETURN_IF_ERROR(read_string(root, "home", "the config", true, &config.home));
  ENVSYNC_RETURN_IF_ERROR(read_string(root, "state", "the config", true, &config.state));
  ENVSYNC_RETURN_IF_ERROR(read_string(root, "manifest", "the config", false, &config.manifest));
  config.state = Resolve(config.state, base_dir);
  if (!config.manifest.empty()) config.manifest = Resolve(config.manifest, base_dir);

  if (const toml::node* mail_node = root.get("mail"); mail_node != nullptr) {
    const toml::table* mail = mail_node->as_table();
    if (mail == nullptr) return fail(LineOf(*mail_node), "[mail] must be a table");
    for (auto&& [field, value] : *mail) {
      const std::string_view f = field.str();
      if (f != "smtp" && f != "from" && f != "base_url" && f != "outbox" && f != "starttls") {
        return fail(LineOf(value), fmt::format("unknown setting '{}' in [mail] (known: smtp, "
                                               "starttls, from, base_url, outbox)",
                                               f));
      }
    }
    for (const auto& [field, out] :
         {std::pair{"smtp", &config.mail.smtp}, std::pair{"from", &config.mail.from},
          std::pair{"base_url", &config.mail.base_url}, std::pair{"outbox", &config.mail.outbox}}) {
      ENVSYNC_RETURN_IF_ERROR(read_string(*mail, field, "[mail]", false, out));
    }
    if (!config.mail.smtp.empty() && config.mail.smtp.rfind("smtp://", 0) != 0 &&
        config.mail.smtp.rfind("smtps://", 0) != 0) {
      // The value is not shown: it may hold the SMTP password.
      return fail(LineOf(*mail->get("smtp")),
                  "smtp must start with smtp:// or smtps:// (smtp://[user:password@]host:port)");
    }
    if (const toml::node* tls = mail->get("starttls"); tls != nullptr) {
      auto flag = tls->value<bool>();
      if (!flag) return fail(LineOf(*tls), "starttls must be true or false");
      config.mail.starttls = *flag;
    }
  }
  if (config.mail.outbox.empty() && IsServerUri(config.state)) {
    // A state store on a server has no folder: mail that cannot be sent waits beside the config.
    config.mail.outbox = Resolve("outbox", base_dir);
  } else if (config.mail.outbox.empty()) {
    config.mail.outbox = (std::filesystem::path(config.state).parent_path() / "outbox").string();
  } else {
    config.mail.outbox = Resolve(config.mail.outbox, base_dir);
  }

  const toml::node* envs_node = root.get("environments");
  const toml::table* envs = envs_node != nullptr ? envs_node->as_table() : nullptr;
  if (envs == nullptr)
    return fail(1, "the config lacks [environments.PROD] and [environments.TEST]");
  for (auto&& [key, node] : *envs) {
    const std::string name(key.str());
    const toml::table* env = node.as_table();
    if (name != "PROD" && name != "TEST") {
      return fail(LineOf(node), fmt::format("unknown environment '{}': envsync synchronizes "
                                            "exactly PROD and TEST",
                                            name));
    }
    if (env == nullptr)
      return fail(LineOf(node), fmt::format("environments.{} must be a table", name));
    for (auto&& [field, value] : *env) {
      if (field.str() != "database" && field.str() != "assets") {
        return fail(LineOf(value), fmt::format("unknown setting '{}' in [environments.{}] (known: "
                                               "database, assets)",
                                               field.str(), name));
      }
    }
    EnvironmentConfig e;
    e.name = name;
    e.line = LineOf(*env);
    const std::string what = fmt::format("[environments.{}]", name);
    ENVSYNC_RETURN_IF_ERROR(read_string(*env, "database", what, true, &e.database));
    ENVSYNC_RETURN_IF_ERROR(read_string(*env, "assets", what, true, &e.assets));
    e.database = Resolve(e.database, base_dir);
    e.assets = Resolve(e.assets, base_dir);
    config.environments[name] = e;
  }
  for (const char* name : {"PROD", "TEST"}) {
    if (config.Find(name) == nullptr) {
      return fail(LineOf(*envs), fmt::format("the config lacks [environments.{}]", name));
    }
  }
  if (config.Find(config.home) == nullptr) {
    return fail(LineOf(*root.get("home")),
                fmt::format("home = \"{}\" names no environment (PROD or TEST)", config.home));
  }
  return config;
}

Result<Config> LoadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::InvalidArgument(fmt::format("cannot read config file '{}'", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  std::error_code ec;
  std::string base = std::filesystem::absolute(path, ec).parent_path().string();
  return ParseConfig(text.str(), path, base);
}

}  // namespace envsync
