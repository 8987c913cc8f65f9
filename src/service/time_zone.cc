#include "envsync/service/time_zone.h"

#include <date/date.h>
#include <date/tz.h>
#include <fmt/format.h>

#include <chrono>
#include <sstream>

namespace envsync::service {
namespace {

bool Digits(std::string_view text, size_t pos, size_t count, int* out) {
  if (pos + count > text.size()) return false;
  *out = 0;
  for (size_t i = pos; i < pos + count; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    *out = *out * 10 + (text[i] - '0');
  }
  return true;
}

std::string FormatUtc(date::sys_seconds t) { return date::format("%Y-%m-%dT%H:%M:%SZ", t); }

const date::time_zone* FindZone(std::string_view name) {
  try {
    return date::locate_zone(name);
  } catch (const std::exception&) {
    return nullptr;
  }
}

date::sys_seconds ParseUtc(const std::string& utc) {
  std::istringstream in(utc);
  date::sys_seconds t{};
  in >> date::parse("%Y-%m-%dT%H:%M:%SZ", t);
  return in.fail() ? date::sys_seconds{} : t;
}

}  // namespace

bool IsTimeZone(std::string_view name) { return !name.empty() && FindZone(name) != nullptr; }

Result<std::string> ParseScheduleTime(std::string_view text, std::string_view default_zone,
                                      std::string_view what) {
  auto bad = [&](std::string_view why) {
    return Status::InvalidArgument(
        fmt::format("{} '{}' {}: give a date and time with its zone, e.g. 2026-11-25T10:00+01:00, "
                    "2026-11-25T09:00Z or 2026-11-25T10:00 Europe/Berlin",
                    what, text, why));
  };
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (text.size() < 16 || !Digits(text, 0, 4, &y) || text[4] != '-' || !Digits(text, 5, 2, &mo) ||
      text[7] != '-' || !Digits(text, 8, 2, &d) || (text[10] != 'T' && text[10] != ' ') ||
      !Digits(text, 11, 2, &h) || text[13] != ':' || !Digits(text, 14, 2, &mi)) {
    return bad("is not a date and time");
  }
  size_t pos = 16;
  if (pos < text.size() && text[pos] == ':') {
    if (!Digits(text, pos + 1, 2, &s)) return bad("has bad seconds");
    pos += 3;
  }
  if (pos < text.size() && text[pos] == '.') {  // fractions of a second are dropped
    ++pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;
  }
  const date::year_month_day ymd{date::year{y}, date::month{unsigned(mo)}, date::day{unsigned(d)}};
  if (!ymd.ok() || h > 23 || mi > 59 || s > 59) return bad("is not a valid date and time");
  const date::local_seconds local = date::local_days{ymd} + std::chrono::hours{h} +
                                    std::chrono::minutes{mi} + std::chrono::seconds{s};
  const std::string_view rest = text.substr(pos);
  std::string_view zone_name;
  if (rest == "Z") return FormatUtc(date::sys_seconds{local.time_since_epoch()});
  if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    int oh = 0, om = 0;
    if (!Digits(rest, 1, 2, &oh) || !Digits(rest, 4, 2, &om) || oh > 23 || om > 59) {
      return bad("has a bad offset");
    }
    const std::chrono::minutes offset{(oh * 60 + om) * (rest[0] == '-' ? -1 : 1)};
    return FormatUtc(date::sys_seconds{local.time_since_epoch()} - offset);
  }
  if (rest.size() > 1 && rest.front() == ' ') {
    zone_name = rest.substr(1);
  } else if (rest.size() > 2 && rest.front() == '[' && rest.back() == ']') {
    zone_name = rest.substr(1, rest.size() - 2);
  } else if (rest.empty() && !default_zone.empty()) {
    zone_name = default_zone;
  } else if (rest.empty()) {
    return bad("has no time zone");
  } else {
    return bad("has a zone that is neither an offset nor a tz name");
  }
  const date::time_zone* zone = FindZone(zone_name);
  if (zone == nullptr) return bad(fmt::format("names an unknown time zone '{}'", zone_name));
  const date::local_info info = zone->get_info(local);
  if (info.result == date::local_info::nonexistent) {
    return bad(fmt::format("does not exist in {}: the clocks skip that hour", zone_name));
  }
  if (info.result == date::local_info::ambiguous) {
    return bad(fmt::format("happens twice in {}: the clocks go back; give an offset", zone_name));
  }
  return FormatUtc(date::sys_seconds{local.time_since_epoch()} - info.first.offset);
}

std::string ShowInZone(const std::string& utc, std::string_view zone_name) {
  const date::time_zone* zone = FindZone(zone_name.empty() ? "UTC" : zone_name);
  if (zone == nullptr) zone = FindZone("UTC");
  const date::zoned_seconds zoned{zone, ParseUtc(utc)};
  return date::format("%Y-%m-%d %H:%M %Z", zoned);
}

long SecondsBetween(const std::string& from, const std::string& to) {
  return static_cast<long>((ParseUtc(to) - ParseUtc(from)).count());
}

}  // namespace envsync::service
