#ifndef ENVSYNC_SERVICE_TIME_ZONE_H_
#define ENVSYNC_SERVICE_TIME_ZONE_H_

#include <string>
#include <string_view>

#include "envsync/core/status.h"

namespace envsync::service {

// True when `name` is a zone of the system's tz database (`Europe/Berlin`, `UTC`).
bool IsTimeZone(std::string_view name);

// Parses a date and time with its zone and returns it in UTC as `YYYY-MM-DDTHH:MM:SSZ`.
// The zone is an offset (`2026-11-25T10:00:00+01:00`, `…Z`) or a tz name after a space or in
// brackets (`2026-11-25T10:00 Europe/Berlin`, `2026-11-25T10:00[Europe/Berlin]`). A time with no
// zone takes `default_zone` when one is given, else it is refused as ambiguous. Local times that
// a zone skips (spring forward) or repeats (fall back) are refused with the reason. Errors are
// InvalidArgument naming `what` (e.g. `--at`) and the text.
Result<std::string> ParseScheduleTime(std::string_view text, std::string_view default_zone = "",
                                      std::string_view what = "--at");

// A UTC time as ParseScheduleTime returns it, shown in `zone`: `2026-11-25 10:00 CET`.
// Falls back to UTC for an unknown zone.
std::string ShowInZone(const std::string& utc, std::string_view zone);

// Seconds from one UTC time (as above) to another.
long SecondsBetween(const std::string& from, const std::string& to);

}  // namespace envsync::service

#endif  // ENVSYNC_SERVICE_TIME_ZONE_H_
