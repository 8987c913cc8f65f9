// The service's security surface, from the route table outwards: every route checked for its
// session, role and CSRF token by a test generated from service::ApiRoutes(); the table against
// docs/API.md and against what server.cc registers; session fixation and CSRF; the security
// headers on every answer and the page's HTML; and secrets (passwords in the config, session
// tokens) kept out of the log, the API's answers and the mail.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>
// The route patterns are httplib's, ECMAScript regular expressions: matched here as httplib
// matches them. (GCC 12 wrongly warns of an uninitialized std::function inside <regex>.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <regex>
#pragma GCC diagnostic pop

#include "envsync/service/server.h"
#include "envsync/service/users.h"
#include "envsync/store/state_store.h"
#include "tests/service/server_test_support.h"
#include "tests/store/pg_support.h"

namespace envsync::testing {
namespace {

using nlohmann::json;
using service::ApiRoutes;
using service::Role;
using service::RouteInfo;
namespace fs = std::filesystem;

constexpr char kCookie[] = "envsync_session";

std::string Name(const RouteInfo& route) { return route.method + " " + route.pattern; }

// The error code of an answer, "" when it has none.
std::string CodeOf(const Api::Answer& a) {
  if (!a.body.is_object() || !a.body.contains("error") || !a.body["error"].is_object()) return "";
  return a.body["error"].value("code", "");
}

// A path `pattern` matches: each group replaced by a value of its kind. IDs name nothing: the
// session, role and CSRF checks must answer before anything is looked up.
std::string SamplePath(const std::string& pattern) {
  static const std::map<std::string, std::string> kSamples = {
      {"([A-Z]+)", "TEST"}, {"([A-Za-z0-9_-]+)", "x-000000000000"}, {"([0-9]+)", "999999"}};
  std::string path = pattern;
  for (size_t open = path.find('('); open != std::string::npos; open = path.find('(')) {
    const size_t close = path.find(')', open);
    const auto sample = kSamples.find(path.substr(open, close - open + 1));
    if (close == std::string::npos || sample == kSamples.end()) {
      ADD_FAILURE() << "no sample value for the group at " << open << " of " << pattern
                    << ": add one to kSamples";
      return "";
    }
    path.replace(open, close - open + 1, sample->second);
  }
  EXPECT_TRUE(std::regex_match(path, std::regex(pattern))) << path << " vs " << pattern;
  return path;
}

// One route line of docs/API.md's table: "| `METHOD PATH` | role | what |".
struct DocumentedRoute {
  std::string method;
  std::string path;  // as documented, e.g. /api/v1/comparisons/{id}?tab=&offset=
  std::string role;  // none, viewer, operator or admin
  // The path with its query dropped and each {placeholder} made a value: the first of
  // alternatives ({PROD\|TEST}), else "1".
  std::string Concrete() const {
    std::string out = path.substr(0, path.find('?'));
    for (size_t open = out.find('{'); open != std::string::npos; open = out.find('{')) {
      const size_t close = out.find('}', open);
      std::string inner = out.substr(open + 1, close - open - 1);
      std::string value = "1";
      if (inner.find('|') != std::string::npos) {
        value = inner.substr(0, inner.find('|'));
        value.erase(std::remove(value.begin(), value.end(), '\\'), value.end());
      }
      out.replace(open, close - open + 1, value);
    }
    return out;
  }
};

std::vector<DocumentedRoute> DocumentedRoutes() {
  const std::string text = ReadBytes(fs::path(ENVSYNC_SOURCE_DIR) / "docs/API.md");
  static const std::regex kLine(R"(^\| `(GET|POST|PUT|PATCH|DELETE) ([^`]+)` \| (\w+) \|)");
  std::vector<DocumentedRoute> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, kLine)) out.push_back({m[1], m[2], m[3]});
  }
  return out;
}

// The routes of the table that answer `method` on `path`.
std::vector<RouteInfo> Matching(const std::string& method, const std::string& path) {
  std::vector<RouteInfo> out;
  for (const RouteInfo& route : ApiRoutes()) {
    if (route.method == method && std::regex_match(path, std::regex(route.pattern))) {
      out.push_back(route);
    }
  }
  return out;
}

// --- The table itself ----------------------------------------------------------------------

// Exactly login, health, metrics and the root (the page, or the API's signpost without one) are
// public; every other route needs a session. A GET only reads; every other method changes
// state and needs the CSRF token. Patterns compile and no route is there twice.
TEST(RouteTableTest, OnlyLoginHealthMetricsAndTheRootArePublic) {
  std::set<std::string> open;
  std::set<std::string> seen;
  for (const RouteInfo& route : ApiRoutes()) {
    EXPECT_TRUE(seen.insert(Name(route)).second) << "twice: " << Name(route);
    EXPECT_NO_THROW(std::regex{route.pattern}) << Name(route);
    if (!route.role) {
      open.insert(Name(route));
      EXPECT_FALSE(route.needs_csrf) << Name(route) << ": a public route has no session";
    } else {
      EXPECT_EQ(route.needs_csrf, route.method != "GET") << Name(route);
    }
  }
  EXPECT_EQ(open, (std::set<std::string>{"GET /", "GET /api/v1/health", "GET /metrics",
                                         "POST /api/v1/login"}));
  EXPECT_GE(seen.size(), 25u);
}

// No handler reaches httplib except from the table: in server.cc, server_.Get/Post/... are
// called only inside Register, which puts every non-public route behind Authorize.
TEST(RouteTableTest, HandlersAreRegisteredOnlyFromTheTable) {
  const std::string source = ReadBytes(fs::path(ENVSYNC_SOURCE_DIR) / "src/service/server.cc");
  const size_t begin = source.find("void Register(const Route& route) {");
  ASSERT_NE(begin, std::string::npos) << "Register is gone: update this test with the new shape";
  const size_t end = source.find("\n  }\n", begin);
  ASSERT_NE(end, std::string::npos);
  static const std::regex kCall(R"(server_\s*\.\s*(Get|Post|Put|Patch|Delete|Options)\s*\()");
  int inside = 0;
  std::vector<int> outside;
  for (auto it = std::sregex_iterator(source.begin(), source.end(), kCall);
       it != std::sregex_iterator(); ++it) {
    const size_t at = static_cast<size_t>(it->position());
    if (at > begin && at < end) {
      ++inside;
    } else {
      outside.push_back(1 +
                        static_cast<int>(std::count(source.begin(), source.begin() + at, '\n')));
    }
  }
  EXPECT_TRUE(outside.empty()) << "server.cc registers a handler outside the route table, on line "
                               << ::testing::PrintToString(outside)
                               << ": add the route to Service::Table() instead";
  EXPECT_EQ(inside, 4) << "Register hands GET, POST, PUT and PATCH routes to httplib";
}

// docs/API.md and the table name the same routes with the same roles: every documented route
// is served by exactly one entry, and every entry (but the root, the page) is documented.
TEST(RouteTableTest, DocumentedRoutesAreTheTable) {
  const std::vector<DocumentedRoute> documented = DocumentedRoutes();
  ASSERT_GE(documented.size(), 25u) << "docs/API.md's route table was not found";
  std::set<std::string> covered;
  for (const DocumentedRoute& doc : documented) {
    SCOPED_TRACE(doc.method + " " + doc.path);
    const std::vector<RouteInfo> routes = Matching(doc.method, doc.Concrete());
    ASSERT_EQ(routes.size(), 1u) << doc.Concrete() << " is served by " << routes.size()
                                 << " routes of the table";
    const RouteInfo& route = routes[0];
    EXPECT_EQ(doc.role, route.role ? std::string(service::RoleName(*route.role)) : "none");
    covered.insert(Name(route));
  }
  for (const RouteInfo& route : ApiRoutes()) {
    if (route.pattern == "/") continue;  // the page (docs/API.md's first paragraph)
    EXPECT_TRUE(covered.contains(Name(route))) << Name(route) << " is not in docs/API.md";
  }
}

// --- Over HTTP -------------------------------------------------------------------------------

class RouteSecurityTest : public ServeFixture {
 protected:
  // A client that presents `token` as its session cookie and `csrf` as its CSRF token.
  Api WithToken(const std::string& token, const std::string& csrf = "") {
    Api api(port_);
    api.cookie_ = std::string(kCookie) + "=" + token;
    api.csrf_ = csrf;
    return api;
  }
  static std::string TokenOf(const Api& api) {
    return api.cookie_.substr(api.cookie_.find('=') + 1);
  }
  // Writes a session of `email` straight into the state store, as a login would, expiring at
  // `expires_at`; returns a client holding it.
  Api SessionInStore(const std::string& email, const std::string& expires_at) {
    const std::string token = service::RandomToken();
    store::Session session;
    session.token_hash = service::Sha256Hex(token);
    session.email = email;
    session.csrf_token = service::RandomToken();
    session.created_at = UtcIn(-13 * 3600);
    session.expires_at = expires_at;
    auto state = store::OpenStateStore(paths_.state.string());
    EXPECT_TRUE(state.ok()) << state.status().message();
    if (state.ok()) {
      EXPECT_TRUE((*state)->SaveSession(session).ok());
    }
    return WithToken(token, session.csrf_token);
  }
};

// Generated from the table: every route that needs a session answers 401 to no cookie, a
// made-up token, the stored hash of a live token, an expired session and a logged-out one;
// 403 forbidden to each role below its own; and, when it changes state, 403 csrf to the right
// role without the X-CSRF-Token header or with another session's token. IDs in the path name
// nothing, so a handler that looked anything up before these checks would answer 404 instead.
// Then the right role (with the token where one is needed) gets past all of them.
TEST_F(RouteSecurityTest, EveryRouteChecksSessionRoleAndCsrfTokenFirst) {
  StartServer();
  const std::map<Role, std::string> email_of = {{Role::kViewer, "vic@shop.example"},
                                                {Role::kOperator, "olga@shop.example"},
                                                {Role::kAdmin, "ada@shop.example"}};
  std::map<Role, Api> user;
  for (const auto& [role, email] : email_of) user.emplace(role, LoggedIn(email));
  Api other_session = LoggedIn("ada@shop.example");
  Api logged_out = LoggedIn("ada@shop.example");
  ASSERT_EQ(logged_out.Post("/api/v1/logout", json::object()).status, 200);
  // The expired session is the admin's, so only its end can refuse it; the same session with
  // an end still ahead is let in. (Written after the logins: a login forgets ended sessions.)
  Api expired = SessionInStore("ada@shop.example", UtcIn(-60));
  Api unexpired = SessionInStore("ada@shop.example", UtcIn(3600));
  ASSERT_EQ(unexpired.Get("/api/v1/session").status, 200);
  Api anonymous(port_);
  Api made_up = WithToken(std::string(64, 'f'), std::string(64, 'f'));
  Api hash_only =
      WithToken(service::Sha256Hex(TokenOf(user.at(Role::kAdmin))), user.at(Role::kAdmin).csrf_);

  int guarded = 0;
  for (const RouteInfo& route : ApiRoutes()) {
    const std::string path = SamplePath(route.pattern);
    SCOPED_TRACE(route.method + " " + path);
    const json body = route.method == "GET" ? json() : json::object();
    auto expect = [&](Api& client, bool csrf, int status, const std::string& code,
                      const std::string& who) {
      const Api::Answer a = client.Send(route.method, path, body, csrf);
      EXPECT_EQ(a.status, status) << who << ": " << a.raw;
      EXPECT_EQ(CodeOf(a), code) << who << ": " << a.raw;
    };
    if (!route.role) {
      const Api::Answer a = anonymous.Send(route.method, path, body);
      EXPECT_TRUE(a.status != 0 && a.status != 401 && a.status != 403 && a.status != 404)
          << "public, but answers " << a.status << ": " << a.raw;
      continue;
    }
    ++guarded;
    expect(anonymous, false, 401, "unauthenticated", "no cookie");
    expect(made_up, true, 401, "unauthenticated", "a made-up token");
    expect(hash_only, true, 401, "unauthenticated", "the stored hash of a live token");
    expect(expired, true, 401, "unauthenticated", "an expired session");
    expect(logged_out, true, 401, "unauthenticated", "a logged-out session");
    if (route.method == "GET") {
      EXPECT_EQ(anonymous.Send("HEAD", path, json()).status, 401) << "HEAD without a cookie";
    }
    for (auto& [role, client] : user) {
      if (role >= *route.role) continue;
      expect(client, true, 403, "forbidden", "the " + std::string(service::RoleName(role)));
    }
    if (route.needs_csrf) {
      Api& right = user.at(*route.role);
      expect(right, false, 403, "csrf", "the right role without X-CSRF-Token");
      Api borrowed = WithToken(TokenOf(right), other_session.csrf_);
      expect(borrowed, true, 403, "csrf", "the right role with another session's token");
    }
  }
  EXPECT_GE(guarded, 20);

  // The right role passes the checks: whatever the route answers then, it is not a refusal.
  // (GET routes without the CSRF header: reading needs none.)
  for (const RouteInfo& route : ApiRoutes()) {
    if (!route.role) continue;
    const std::string path = SamplePath(route.pattern);
    Api& right = user.at(*route.role);
    const Api::Answer a = right.Send(
        route.method, path, route.method == "GET" ? json() : json::object(), route.needs_csrf);
    EXPECT_TRUE(a.status != 0 && a.status != 401 && a.status != 403)
        << route.method << " " << path << " refuses its own role: " << a.status << " " << a.raw;
    if (right.Get("/api/v1/session").status == 401) {  // that was the logout
      ASSERT_EQ(right.Login(email_of.at(*route.role), email_of.at(*route.role) + "-pw").status,
                200);
    }
  }
}

// Every route docs/API.md lists is served: without a session, a route that needs one answers
// 401, and a public one neither 401 nor 404.
TEST_F(RouteSecurityTest, EveryDocumentedRouteIsServed) {
  StartServer();
  Api anonymous(port_);
  for (const DocumentedRoute& doc : DocumentedRoutes()) {
    const std::string path = doc.Concrete();
    const Api::Answer a =
        anonymous.Send(doc.method, path, doc.method == "GET" ? json() : json::object());
    if (doc.role == "none") {
      EXPECT_TRUE(a.status != 0 && a.status != 401 && a.status != 404)
          << doc.method << " " << path << ": " << a.status;
    } else {
      EXPECT_EQ(a.status, 401) << doc.method << " " << path << ": " << a.raw;
    }
  }
}

// --- Sessions: fixation, logout, cookie -----------------------------------------------------

// A token the client brings to the login, made up or another user's live session, is never
// adopted: the login answers a fresh token, the made-up one stays worthless, and the other
// user's session stays theirs.
TEST_F(RouteSecurityTest, LoginIssuesAFreshTokenWhateverCookieTheClientBrings) {
  StartServer();
  const std::string planted = service::RandomToken();
  Api victim = WithToken(planted);
  ASSERT_EQ(victim.Login("olga@shop.example", "olga@shop.example-pw").status, 200);
  EXPECT_NE(TokenOf(victim), planted);
  EXPECT_EQ(TokenOf(victim).size(), planted.size());
  EXPECT_EQ(WithToken(planted).Get("/api/v1/session").status, 401);
  EXPECT_EQ(victim.Get("/api/v1/session").body["email"], "olga@shop.example");

  // The attacker's own session, planted in the victim's browser before the victim logs in.
  Api attacker = LoggedIn("vic@shop.example");
  Api second_victim = WithToken(TokenOf(attacker));
  ASSERT_EQ(second_victim.Login("olga@shop.example", "olga@shop.example-pw").status, 200);
  EXPECT_NE(TokenOf(second_victim), TokenOf(attacker));
  const Api::Answer still = attacker.Get("/api/v1/session");
  EXPECT_EQ(still.body["email"], "vic@shop.example") << still.raw;
  EXPECT_EQ(still.body["role"], "viewer") << "the victim's login never upgrades a planted token";
  EXPECT_EQ(second_victim.Get("/api/v1/session").body["email"], "olga@shop.example");
}

// Two logins of one user are two sessions, each with its own token and CSRF token.
TEST_F(RouteSecurityTest, EveryLoginGetsItsOwnTokenAndCsrfToken) {
  StartServer();
  Api first = LoggedIn("olga@shop.example");
  Api second = LoggedIn("olga@shop.example");
  EXPECT_NE(TokenOf(first), TokenOf(second));
  EXPECT_NE(first.csrf_, second.csrf_);
  EXPECT_EQ(first.csrf_.size(), 64u);
  EXPECT_EQ(first.Get("/api/v1/session").body["csrf_token"], first.csrf_);
  EXPECT_EQ(second.Get("/api/v1/session").body["csrf_token"], second.csrf_);
}

// Logout ends the session on the server, not only in the browser: the old cookie is 401
// afterwards even when a client keeps sending it, and its CSRF token is worthless with a new
// session. Other sessions of the same user go on.
TEST_F(RouteSecurityTest, LogoutEndsTheSessionOnTheServer) {
  StartServer();
  Api kept = LoggedIn("olga@shop.example");
  Api leaving = LoggedIn("olga@shop.example");
  const std::string old_token = TokenOf(leaving);
  const std::string old_csrf = leaving.csrf_;
  const Api::Answer out = leaving.Post("/api/v1/logout", json::object());
  ASSERT_EQ(out.status, 200) << out.raw;
  const std::string cleared = Api::Header(out, "Set-Cookie");
  EXPECT_EQ(cleared.rfind(std::string(kCookie) + "=;", 0), 0u) << cleared;
  EXPECT_NE(cleared.find("Max-Age=0"), std::string::npos) << cleared;

  Api replay = WithToken(old_token, old_csrf);
  EXPECT_EQ(replay.Get("/api/v1/session").status, 401);
  EXPECT_EQ(replay.Post("/api/v1/comparisons", {{"from", "TEST"}, {"to", "PROD"}}).status, 401);
  EXPECT_EQ(replay.Post("/api/v1/logout", json::object()).status, 401);
  EXPECT_EQ(kept.Get("/api/v1/session").status, 200);

  Api back = LoggedIn("olga@shop.example");
  Api stale_csrf = WithToken(TokenOf(back), old_csrf);
  const Api::Answer refused = stale_csrf.Post("/api/v1/comparisons", {{"from", "TEST"}});
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(CodeOf(refused), "csrf");
}

// The session cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page
// sends it) and Path=/ (the page and the API share it), for 12 hours. It is not Secure:
// `envsync serve` speaks plain HTTP (docs/API.md; TLS belongs to a proxy in front), and a browser
// would never send a Secure cookie back over it.
TEST_F(RouteSecurityTest, SessionCookieIsHttpOnlySameSiteStrictAndSiteWide) {
  StartServer();
  Api api(port_);
  const Api::Answer login = api.Login("vic@shop.example", "vic@shop.example-pw");
  ASSERT_EQ(login.status, 200);
  ASSERT_EQ(login.headers.count("Set-Cookie"), 1u);
  const std::string cookie = Api::Header(login, "Set-Cookie");
  std::set<std::string> attributes;
  std::istringstream parts(cookie.substr(cookie.find(';') + 1));
  for (std::string part; std::getline(parts, part, ';');) {
    attributes.insert(part.substr(part.find_first_not_of(' ')));
  }
  EXPECT_EQ(attributes,
            (std::set<std::string>{"Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=43200"}))
      << cookie;
  EXPECT_EQ(cookie.rfind(std::string(kCookie) + "=", 0), 0u) << cookie;
}

// The CSRF token counts only in its header and only exact: not in the body, not in the query,
// not empty, not another session's.
TEST_F(RouteSecurityTest, CsrfTokenCountsOnlyInItsHeader) {
  StartServer();
  Api op = LoggedIn("olga@shop.example");
  Api other = LoggedIn("olga@shop.example");
  const json body = {{"from", "TEST"}, {"to", "PROD"}, {"csrf_token", op.csrf_}};
  for (const auto& [path, csrf] :
       {std::pair{std::string("/api/v1/comparisons"), std::string()},
        std::pair{"/api/v1/comparisons?csrf_token=" + op.csrf_, std::string()},
        std::pair{std::string("/api/v1/comparisons"), other.csrf_},
        std::pair{std::string("/api/v1/comparisons"), op.csrf_.substr(0, 63)},
        std::pair{std::string("/api/v1/comparisons"), op.csrf_ + "0"}}) {
    Api forged = WithToken(TokenOf(op), csrf);
    const Api::Answer a = forged.Post(path, body);
    EXPECT_EQ(a.status, 403) << path << " with '" << csrf << "': " << a.raw;
    EXPECT_EQ(CodeOf(a), "csrf") << a.raw;
  }
  EXPECT_EQ(op.Get("/api/v1/jobs").body["jobs"].size(), 0u) << "nothing was started";
}

// --- Headers and the page ------------------------------------------------------------------

// The response head of a raw request, its header names lowercased.
struct RawAnswer {
  int status = 0;
  std::multimap<std::string, std::string> headers;
};
RawAnswer RawRequest(int port, const std::string& bytes) {
  RawAnswer answer;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return answer;
  }
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  (void)!write(fd, bytes.data(), bytes.size());
  std::string in;
  char buffer[4096];
  for (ssize_t n;
       in.find("\r\n\r\n") == std::string::npos && (n = read(fd, buffer, sizeof(buffer))) > 0;) {
    in.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  std::istringstream lines(in.substr(0, in.find("\r\n\r\n")));
  std::string line;
  if (std::getline(lines, line) && line.size() > 12) answer.status = std::stoi(line.substr(9, 3));
  while (std::getline(lines, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    answer.headers.emplace(name, line.substr(line.find_first_not_of(' ', colon + 1)));
  }
  return answer;
}

// The policy's directives: name -> its sources.
std::map<std::string, std::vector<std::string>> Directives(const std::string& policy) {
  std::map<std::string, std::vector<std::string>> out;
  std::istringstream parts(policy);
  for (std::string part; std::getline(parts, part, ';');) {
    std::istringstream words(part);
    std::string name;
    if (!(words >> name)) continue;
    auto& sources = out[name];
    for (std::string w; words >> w;) sources.push_back(w);
  }
  return out;
}

// Checks one answer's security headers: one Content-Security-Policy whose scripts (script-src,
// else default-src) come from this server only, never inline, eval'd or from data:, and that no
// page may frame; nosniff; no framing and no referrer by the older headers too.
void ExpectSecurityHeaders(const std::multimap<std::string, std::string>& headers,
                           const std::string& what) {
  SCOPED_TRACE(what);
  auto one = [&](const std::string& name) -> std::string {
    EXPECT_EQ(headers.count(name), 1u) << name;
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  };
  const auto policy = Directives(one("content-security-policy"));
  const auto script =
      policy.contains("script-src") ? policy.find("script-src") : policy.find("default-src");
  ASSERT_NE(script, policy.end()) << "no script-src or default-src";
  EXPECT_EQ(script->second, std::vector<std::string>{"'self'"}) << script->first;
  ASSERT_TRUE(policy.contains("frame-ancestors"));
  EXPECT_EQ(policy.at("frame-ancestors"), std::vector<std::string>{"'none'"});
  EXPECT_TRUE(policy.contains("object-src") || script->first == "default-src");
  EXPECT_EQ(one("x-content-type-options"), "nosniff");
  EXPECT_EQ(one("x-frame-options"), "DENY");
  EXPECT_EQ(one("referrer-policy"), "no-referrer");
}

// Every answer carries the security headers: the page and its files, the API's answers, and
// each kind of refusal and error, down to requests httplib refuses before any route (a request
// line that is not HTTP, a path too long).
TEST_F(RouteSecurityTest, EveryAnswerCarriesTheSecurityHeaders) {
  StartServer();
  Api anonymous(port_);
  Api viewer = LoggedIn("vic@shop.example");
  Api attacker(port_);
  for (int i = 0; i < 5; ++i) attacker.Login("ada@shop.example", "wrong-" + std::to_string(i));
  struct Case {
    Api* client;
    std::string method;
    std::string path;
    json body;
    bool csrf;
    int status;
  };
  const std::vector<Case> cases = {
      {&anonymous, "GET", "/", json(), false, 200},
      {&anonymous, "HEAD", "/", json(), false, 200},
      {&anonymous, "GET", "/index.html", json(), false, 200},
      {&anonymous, "GET", "/app.js", json(), false, 200},
      {&anonymous, "GET", "/style.css", json(), false, 200},
      {&anonymous, "GET", "/icon.svg", json(), false, 200},
      {&anonymous, "GET", "/missing.css", json(), false, 404},
      {&anonymous, "GET", "/api/v1/health", json(), false, 200},
      {&anonymous, "GET", "/metrics", json(), false, 200},
      {&anonymous, "GET", "/api/v1/jobs", json(), false, 401},
      {&anonymous, "GET", "/api/v1/no-such-route", json(), false, 404},
      {&anonymous, "POST", "/api/v1/login", {{"email", 7}}, false, 400},
      {&attacker,
       "POST",
       "/api/v1/login",
       {{"email", "ada@shop.example"}, {"password", "x"}},
       false,
       429},
      {&viewer, "GET", "/api/v1/users", json(), true, 403},
      {&viewer, "POST", "/api/v1/messages/1/read", json::object(), false, 403},
      {&viewer, "GET", "/api/v1/comparisons/c-000000000000", json(), true, 404},
      {&viewer, "GET", "/api/v1/environments/TEST/gallery?path=mobile_app/splash.png", json(), true,
       200},
      {&viewer, "GET", "/api/v1/environments/TEST/gallery?path=../../prod.db", json(), true, 400},
      {&viewer, "GET", "/api/v1/session", json(), true, 200},
  };
  for (const Case& c : cases) {
    const Api::Answer a = c.client->Send(c.method, c.path, c.body, c.csrf);
    EXPECT_EQ(a.status, c.status) << c.method << " " << c.path << ": " << a.raw;
    std::multimap<std::string, std::string> headers;
    for (const auto& [name, value] : a.headers) {
      std::string lower = name;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char ch) { return std::tolower(ch); });
      headers.emplace(lower, value);
    }
    ExpectSecurityHeaders(headers, c.method + " " + c.path + " " + std::to_string(a.status));
  }
  const RawAnswer garbage = RawRequest(port_, "NOT HTTP AT ALL\r\n\r\n");
  EXPECT_EQ(garbage.status, 400);
  ExpectSecurityHeaders(garbage.headers, "a request line that is not HTTP");
  const RawAnswer too_long =
      RawRequest(port_, "GET /" + std::string(10000, 'a') +
                            " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(too_long.status, 414);
  ExpectSecurityHeaders(too_long.headers, "a path too long");
}

// The policy forbids inline script, so the page must have none: every <script> loads a file
// and has no body, no element carries an event handler attribute (onclick=...) or a
// javascript: URL, and (styles being 'self' too) there is no <style> block or style attribute.
TEST(ServerPageTest, HtmlHasNoInlineScriptHandlersOrStyles) {
  int pages = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(ENVSYNC_SOURCE_DIR) / "web")) {
    if (entry.path().extension() != ".html") continue;
    ++pages;
    const std::string html = ReadBytes(entry.path());
    SCOPED_TRACE(entry.path().filename().string());
    static const std::regex kScript(R"(<script\b([^>]*)>([\s\S]*?)</script\s*>)",
                                    std::regex::icase);
    int scripts = 0;
    for (auto it = std::sregex_iterator(html.begin(), html.end(), kScript);
         it != std::sregex_iterator(); ++it) {
      ++scripts;
      const std::string attributes = (*it)[1];
      const std::string body = (*it)[2];
      EXPECT_NE(attributes.find("src="), std::string::npos) << "inline <script" << attributes;
      EXPECT_EQ(body.find_first_not_of(" \t\r\n"), std::string::npos)
          << "<script> with a body: " << body.substr(0, 80);
    }
    EXPECT_GT(scripts, 0) << "the page loads its script";
    static const std::regex kTag(R"(<[a-zA-Z][^>]*>)");
    static const std::regex kHandler(R"(\s(on[a-z]+|style)\s*=)", std::regex::icase);
    for (auto it = std::sregex_iterator(html.begin(), html.end(), kTag);
         it != std::sregex_iterator(); ++it) {
      const std::string tag = it->str();
      std::smatch m;
      EXPECT_FALSE(std::regex_search(tag, m, kHandler)) << "inline " << m.str(1) << ": " << tag;
      std::string lower = tag;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      EXPECT_EQ(lower.find("javascript:"), std::string::npos) << tag;
      EXPECT_NE(lower.rfind("<style", 0), 0u) << "a <style> block: " << tag;
    }
  }
  EXPECT_GT(pages, 0);
}

// --- Secrets ---------------------------------------------------------------------------------

// envsync's state store and the TEST environment on PostgreSQL as a role with its own password,
// and mail through an SMTP server that takes a password (and is down): every secret of the
// config is somewhere the service could let it out.
class ServerSecretsTest : public ServeFixture {
 protected:
  void SetUp() override {
    ENVSYNC_REQUIRE_POSTGRES();
    static int counter = 0;
    role_ = "envsync_secrets_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    pg_password_ = "PgPw" + service::RandomToken(8);
    wrong_pg_password_ = "WrongPgPw" + service::RandomToken(8);
    smtp_password_ = "SmtpPw" + service::RandomToken(8);
    {
      Pg admin(ServerUri());
      ASSERT_TRUE(admin.ok()) << admin.error();
      admin.Run("CREATE ROLE " + role_ + " LOGIN SUPERUSER PASSWORD '" + pg_password_ + "'");
      admin.Run("CREATE DATABASE " + role_ + "_state");
    }
    DemoEnvironments::SetUp();
    Build(Start::kPendingWork);
    CopySqliteToPostgres(paths_.test_db, role_ + "_test");
    auto state = store::OpenStateStore(Uri(role_ + "_state", pg_password_));
    ASSERT_TRUE(state.ok()) << state.status().message();
    for (const auto& [email, role] :
         {std::pair{"olga@shop.example", "operator"}, std::pair{"ada@shop.example", "admin"}}) {
      ASSERT_TRUE(service::AddUser(**state, email, role, std::string(email) + "-pw", "UTC",
                                   "2026-01-01T00:00:00Z")
                      .ok());
    }
    demo_config_ = ReadBytes(paths_.config);
  }
  void TearDown() override {
    ServeFixture::TearDown();
    if (role_.empty()) return;
    DropPostgresDatabase(role_ + "_state");
    DropPostgresDatabase(role_ + "_test");
    Pg(ServerUri()).Run("DROP ROLE IF EXISTS " + role_);
  }

  // The URI of database `db` for this test's role, with `password`.
  std::string Uri(const std::string& db, const std::string& password) const {
    const std::string server = ServerUri();
    const size_t at = server.rfind('@');
    const std::string host = server.substr(at + 1, server.rfind('/') - at - 1);
    return "postgresql://" + role_ + ":" + password + "@" + host + "/" + db;
  }

  // Writes the config: the state store and TEST on PostgreSQL (TEST with `test_password`),
  // then `mail` (a [mail] section, or "").
  void Configure(const std::string& test_password, const std::string& state_password,
                 const std::string& mail) {
    std::string config = demo_config_;
    auto replace_value = [&](const std::string& key_line, const std::string& value) {
      const size_t at = config.find(key_line);
      ASSERT_NE(at, std::string::npos) << key_line << " in " << config;
      config.replace(at, config.find('\n', at) - at, value);
    };
    replace_value("state = ", "state = \"" + Uri(role_ + "_state", state_password) + "\"");
    replace_value("database = \"" + paths_.test_db.string(),
                  "database = \"" + Uri(role_ + "_test", test_password) + "\"");
    config.insert(config.find("[environments"), mail);
    WriteBytes(paths_.config, config);
  }

  std::string role_;
  std::string pg_password_;
  std::string wrong_pg_password_;
  std::string smtp_password_;
  std::string demo_config_;
};

// The SMTP password, the PostgreSQL passwords (right and wrong), the users' passwords (right,
// wrong, and one an admin sets through the API) and every session and CSRF token never appear
// in the server's log, in /api/v1/messages, /jobs, /history or /audit, in the mail written to
// the outbox, or in the state store's sessions. Along the way: logins that work and fail, a
// comparison and a sync whose mail fails, then, with TEST's password wrong, a comparison and a
// sync that fail and are mailed; last, a server whose state store refuses its password (it
// answers 503) and one whose smtp URL has the wrong scheme (it does not start).
TEST_F(ServerSecretsTest, SecretsNeverReachTheLogAnswersMailOrStore) {
  std::vector<std::pair<std::string, std::string>> secrets = {
      {"the SMTP password", smtp_password_},
      {"the PostgreSQL password", pg_password_},
      {"the wrong PostgreSQL password", wrong_pg_password_},
      {"olga's password", "olga@shop.example-pw"},
      {"ada's password", "ada@shop.example-pw"},
      {"a wrong login password", "Wrong-Login-Pw-4711"},
      {"the new user's password", "New-User-Pw-0815"}};
  auto keep_session = [&](const std::string& who, const Api& api) {
    secrets.emplace_back(who + "'s session token", api.cookie_.substr(api.cookie_.find('=') + 1));
    secrets.emplace_back(who + "'s CSRF token", api.csrf_);
  };

  // 1. Mail through an SMTP server that takes a password and is down.
  const std::string smtp =
      "smtp://mailer:" + smtp_password_ + "@127.0.0.1:" + std::to_string(FreePort());
  Configure(pg_password_, pg_password_,
            "[mail]\nsmtp = \"" + smtp + "\"\nfrom = \"envsync@shop.example\"\n\n");
  StartServer();
  Api olga = LoggedIn("olga@shop.example");
  Api ada = LoggedIn("ada@shop.example");
  keep_session("olga", olga);
  keep_session("ada", ada);
  EXPECT_EQ(Api(port_).Login("olga@shop.example", "Wrong-Login-Pw-4711").status, 401);
  const std::string comparison = CompareThroughApi(olga);
  ASSERT_FALSE(comparison.empty());
  const Api::Answer sync = olga.Post("/api/v1/syncs", {{"comparison_id", comparison}});
  ASSERT_EQ(sync.status, 202) << sync.raw;
  const json synced = olga.WaitForJob(sync.body["job_id"]);
  ASSERT_TRUE(synced["result"].is_object()) << synced.dump();
  ASSERT_TRUE(synced["result"]["mail"].is_string()) << "the mail must have failed: " << synced;
  EXPECT_NE(synced["result"]["mail"].get<std::string>().find("127.0.0.1"), std::string::npos);
  ASSERT_EQ(ada.Post("/api/v1/users", {{"email", "nina@shop.example"},
                                       {"role", "viewer"},
                                       {"password", "New-User-Pw-0815"}})
                .status,
            201);
  Api nina(port_);
  ASSERT_EQ(nina.Login("nina@shop.example", "New-User-Pw-0815").status, 200);
  keep_session("nina", nina);
  ASSERT_EQ(nina.Post("/api/v1/logout", json::object()).status, 200);
  server_.Stop(SIGTERM);

  // 2. Mail into the outbox, and TEST's password wrong: a comparison and a sync fail, and each
  // failure is a message and a mail.
  Configure(wrong_pg_password_, pg_password_, "");
  StartServe(&server_, &port_, "serve2.err", {});
  Api olga2 = LoggedIn("olga@shop.example");
  Api ada2 = LoggedIn("ada@shop.example");
  keep_session("olga (second server)", olga2);
  keep_session("ada (second server)", ada2);
  const Api::Answer compare = olga2.Post("/api/v1/comparisons", {{"from", "TEST"}, {"to", "PROD"}});
  ASSERT_EQ(compare.status, 202) << compare.raw;
  const json failed_compare = olga2.WaitForJob(compare.body["job_id"]);
  EXPECT_EQ(failed_compare["state"], "failed") << failed_compare.dump();
  EXPECT_NE(failed_compare["error"].get<std::string>().find(":***@"), std::string::npos)
      << "the error names TEST's server, its password hidden: " << failed_compare["error"];
  const Api::Answer resync = olga2.Post("/api/v1/syncs", {{"comparison_id", comparison}});
  ASSERT_EQ(resync.status, 202) << resync.raw;
  const json failed_sync = olga2.WaitForJob(resync.body["job_id"]);
  EXPECT_EQ(failed_sync["state"], "failed") << failed_sync.dump();
  std::vector<std::string> mails;
  for (int i = 0; i < 100 && mails.size() < 2; ++i) {
    mails = Mails(dir_ / "outbox");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GE(mails.size(), 2u) << "the failures are mailed";
  bool mailed_error = false;
  for (const std::string& mail : mails) {
    mailed_error = mailed_error || mail.find("TEST") != std::string::npos;
  }
  EXPECT_TRUE(mailed_error) << "a mail tells what failed";

  std::vector<std::pair<std::string, std::string>> places;
  for (const char* path : {"/api/v1/messages", "/api/v1/jobs", "/api/v1/history"}) {
    places.emplace_back(std::string("olga's ") + path, olga2.Get(path).raw);
  }
  places.emplace_back("ada's /api/v1/messages", ada2.Get("/api/v1/messages").raw);
  const Api::Answer audit = ada2.Get("/api/v1/audit");
  ASSERT_EQ(audit.status, 200);
  EXPECT_NE(audit.raw.find("user.add"), std::string::npos) << "the audit log has the new user";
  places.emplace_back("the audit log", audit.raw);
  for (size_t i = 0; i < mails.size(); ++i) {
    places.emplace_back("outbox mail " + std::to_string(i), mails[i]);
  }
  places.emplace_back("the sessions in the state store",
                      Pg(Uri(role_ + "_state", pg_password_))
                          .Run("SELECT token_hash, email, created_at FROM sessions"));
  server_.Stop(SIGTERM);

  // 3. The state store's password wrong: the server answers 503 without naming the store, and
  // its log names it (password hidden); its job runner gives up with an error in the log.
  Configure(pg_password_, wrong_pg_password_, "");
  StartServe(&server_, &port_, "serve3.err", {});
  const Api::Answer health = Api(port_).Get("/api/v1/health");
  EXPECT_EQ(health.status, 503) << health.raw;
  // Anyone may ask: the answer does not say where the store is (the log does, below).
  EXPECT_EQ(health.raw.find(role_), std::string::npos) << health.raw;
  EXPECT_NE(health.raw.find("state store"), std::string::npos) << health.raw;
  places.emplace_back("the health of a server without its state store", health.raw);
  const Api::Answer no_login = Api(port_).Login("olga@shop.example", "olga@shop.example-pw");
  EXPECT_EQ(no_login.status, 503) << no_login.raw;
  places.emplace_back("a login without the state store", no_login.raw);
  for (int i = 0; i < 200; ++i) {
    if (ReadBytes(dir_ / "serve3.err").find("job runner") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  server_.Stop(SIGTERM);
  EXPECT_NE(ReadBytes(dir_ / "serve3.err").find("***"), std::string::npos)
      << ReadBytes(dir_ / "serve3.err");

  // 4. An smtp URL (with a password) of the wrong scheme: serve does not start, and says why.
  Configure(pg_password_, pg_password_,
            "[mail]\nsmtp = \"smtpx://mailer:" + smtp_password_ + "@127.0.0.1:25\"\n\n");
  Child misconfigured;
  misconfigured.Start({ENVSYNC_BINARY, "--config", paths_.config.string(), "serve", "--listen",
                       "127.0.0.1:" + std::to_string(FreePort())},
                      dir_ / "serve4.err");
  EXPECT_NE(misconfigured.WaitFor(60000), std::nullopt) << "serve takes an smtpx:// URL";
  EXPECT_NE(ReadBytes(dir_ / "serve4.err").find("smtp"), std::string::npos);

  const std::string log = ReadBytes(dir_ / "serve.err") + ReadBytes(dir_ / "serve2.err");
  EXPECT_NE(log.find("POST /api/v1/login 200"), std::string::npos) << log;
  EXPECT_NE(log.find("mail not delivered"), std::string::npos) << log;
  places.emplace_back("the server's log", log);
  places.emplace_back("the log of a server whose state store refused it",
                      ReadBytes(dir_ / "serve3.err"));
  places.emplace_back("the log of a server with a bad smtp URL", ReadBytes(dir_ / "serve4.err"));
  for (const auto& [place, text] : places) {
    for (const auto& [secret, value] : secrets) {
      ASSERT_FALSE(value.empty()) << secret;
      EXPECT_EQ(text.find(value), std::string::npos) << secret << " is in " << place << ":\n"
                                                     << text;
    }
  }
}

}  // namespace
}  // namespace envsync::testing
