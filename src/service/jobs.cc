#include "envsync/service/jobs.h"

#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>

namespace envsync::service {
namespace {

using nlohmann::json;

bool Digits(std::string_view text, size_t pos, size_t count, int* out) {
  if (pos + count > text.size()) return false;
  *out = 0;
  for (size_t i = pos; i < pos + count; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    *out = *out * 10 + (text[i] - '0');
  }
  return true;
}

std::string FormatUtc(std::chrono::sys_seconds t) {
  const auto day = std::chrono::floor<std::chrono::days>(t);
  const std::chrono::year_month_day ymd{day};
  const std::chrono::hh_mm_ss hms{t - day};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                     hms.hours().count(), hms.minutes().count(), hms.seconds().count());
}

// Seconds between two UTC timestamps of the form FormatUtc writes.
long SecondsBetween(const std::string& from, const std::string& to) {
  auto parse = [](const std::string& t) -> std::chrono::sys_seconds {
    auto utc = ParseScheduleTime(t);
    if (!utc.ok()) return {};
    int y = 0, mo = 1, d = 1, h = 0, mi = 0, s = 0;
    Digits(*utc, 0, 4, &y);
    Digits(*utc, 5, 2, &mo);
    Digits(*utc, 8, 2, &d);
    Digits(*utc, 11, 2, &h);
    Digits(*utc, 14, 2, &mi);
    Digits(*utc, 17, 2, &s);
    return std::chrono::sys_days{std::chrono::year{y} / mo / d} + std::chrono::hours{h} +
           std::chrono::minutes{mi} + std::chrono::seconds{s};
  };
  return static_cast<long>((parse(to) - parse(from)).count());
}

}  // namespace

Result<std::string> ParseScheduleTime(std::string_view text) {
  auto bad = [&] {
    return Status::InvalidArgument(fmt::format(
        "--at '{}' is not an ISO-8601 time with its zone, e.g. 2026-11-25T10:00:00+01:00 or "
        "2026-11-25T09:00:00Z",
        text));
  };
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (text.size() < 17 || !Digits(text, 0, 4, &y) || text[4] != '-' || !Digits(text, 5, 2, &mo) ||
      text[7] != '-' || !Digits(text, 8, 2, &d) || (text[10] != 'T' && text[10] != ' ') ||
      !Digits(text, 11, 2, &h) || text[13] != ':' || !Digits(text, 14, 2, &mi)) {
    return bad();
  }
  size_t pos = 16;
  if (pos < text.size() && text[pos] == ':') {
    if (!Digits(text, pos + 1, 2, &s)) return bad();
    pos += 3;
  }
  if (pos < text.size() && text[pos] == '.') {  // fractions of a second are dropped
    ++pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;
  }
  int offset_minutes = 0;
  if (pos < text.size() && text[pos] == 'Z' && pos + 1 == text.size()) {
    offset_minutes = 0;
  } else if (pos + 6 == text.size() && (text[pos] == '+' || text[pos] == '-') &&
             text[pos + 3] == ':') {
    int oh = 0, om = 0;
    if (!Digits(text, pos + 1, 2, &oh) || !Digits(text, pos + 4, 2, &om) || oh > 23 || om > 59) {
      return bad();
    }
    offset_minutes = (oh * 60 + om) * (text[pos] == '-' ? -1 : 1);
  } else {
    return bad();
  }
  const std::chrono::year_month_day ymd{std::chrono::year{y}, std::chrono::month{unsigned(mo)},
                                        std::chrono::day{unsigned(d)}};
  if (!ymd.ok() || h > 23 || mi > 59 || s > 60) return bad();
  const auto local = std::chrono::sys_days{ymd} + std::chrono::hours{h} + std::chrono::minutes{mi} +
                     std::chrono::seconds{s};
  return FormatUtc(local - std::chrono::minutes{offset_minutes});
}

std::string SyncRequestToJson(const sync::SyncRequest& r) {
  return json{{"comparison_id", r.comparison_id}, {"select", r.select},
              {"deselect", r.deselect},           {"resolve", r.resolve},
              {"test_import", r.test_import},     {"started_by", r.started_by}}
      .dump();
}

Result<sync::SyncRequest> SyncRequestFromJson(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::Unavailable("a stored job's request is not valid JSON");
  try {
    sync::SyncRequest r;
    r.comparison_id = j.at("comparison_id").get<std::string>();
    r.select = j.at("select").get<std::vector<std::string>>();
    r.deselect = j.at("deselect").get<std::vector<std::string>>();
    r.resolve = j.at("resolve").get<std::vector<std::string>>();
    r.test_import = j.at("test_import").get<bool>();
    r.started_by = j.at("started_by").get<std::string>();
    return r;
  } catch (const std::exception& e) {
    return Status::Unavailable(fmt::format("a stored job's request is malformed: {}", e.what()));
  }
}

Result<store::Job> ScheduleSync(store::StateStore& state, const sync::SyncRequest& request,
                                const std::string& run_at, const std::string& user,
                                const std::string& now, const std::string& job_id) {
  store::Job job;
  job.id = job_id;
  job.kind = "sync";
  job.state = "scheduled";
  job.created_at = now;
  job.run_at = run_at;
  job.started_by = user;
  job.request = SyncRequestToJson(request);
  ENVSYNC_RETURN_IF_ERROR(state.SaveJob(job));
  store::Message message;
  message.user = user;
  message.created_at = now;
  message.job_id = job.id;
  message.title = "Synchronization process";
  message.body = fmt::format(
      "The synchronization of comparison {}{} is scheduled for {} (UTC). To cancel it: "
      "envsync cancel {}",
      request.comparison_id, request.test_import ? " (test import)" : "", run_at, job.id);
  auto added = state.AddMessage(message);
  if (!added.ok()) return added.status();
  return job;
}

Status CancelJob(store::StateStore& state, const std::string& job_id, const std::string& user,
                 const std::string& now) {
  auto job = state.LoadJob(job_id);
  if (!job.ok()) return job.status();
  if (job->state != "scheduled") {
    return Status::InvalidArgument(
        fmt::format("job {} is {}: only a scheduled job can be cancelled", job_id, job->state));
  }
  job->state = "cancelled";
  job->finished_at = now;
  ENVSYNC_RETURN_IF_ERROR(state.SaveJob(*job));
  store::Message message;
  message.user = job->started_by;
  message.created_at = now;
  message.job_id = job_id;
  message.title = "Synchronization process cancelled";
  message.body = fmt::format("The synchronization scheduled for {} (UTC) was cancelled by {}.",
                             job->run_at, user);
  auto added = state.AddMessage(message);
  return added.ok() ? Status::Ok() : added.status();
}

store::Message ComparisonFinishedMessage(const Comparison& c, const std::string& user) {
  const TabCounts counts = c.Counts();
  store::Message message;
  message.user = user;
  message.created_at = c.created_at;
  message.title = "Comparison finished";
  message.body = fmt::format(
      "Comparison {} ({} -> {}) is ready: {} conflicts, {} new, {} modified, {} deleted. "
      "Review: envsync show {}",
      c.id, c.from, c.to, counts.conflicts, counts.new_records, counts.modified, counts.deleted,
      c.id);
  return message;
}

store::Message SyncEndedMessage(const sync::SyncOutcome& o, const std::string& user,
                                const std::string& now, const std::string& job_id) {
  store::Message message;
  message.user = user;
  message.created_at = now;
  message.job_id = job_id;
  message.title =
      o.success ? "Success: Synchronization process" : "FAILURE: Synchronization process";
  message.body =
      o.success ? fmt::format("Sync {}{} completed: {} new, {} modified, {} deleted, {} files.",
                              o.sync_id, o.test_import ? " (test import, nothing kept)" : "",
                              o.applied.new_records, o.applied.modified, o.applied.deleted, o.files)
                : fmt::format("Sync {} failed: {}", o.sync_id, o.error);
  return message;
}

Result<std::vector<std::string>> RunDueJobs(
    store::StateStore& state, const std::function<std::string()>& now,
    const std::function<Result<sync::SyncOutcome>(const sync::SyncRequest&)>& run,
    const std::function<std::string(const store::Message&)>& notify) {
  std::vector<std::string> ran;
  auto jobs = state.ListJobs();
  if (!jobs.ok()) return jobs.status();
  for (store::Job& job : *jobs) {
    const std::string started = now();
    if (job.state != "scheduled" || job.run_at > started) continue;
    auto request = SyncRequestFromJson(job.request);
    job.state = "running";
    job.started_at = started;
    ENVSYNC_RETURN_IF_ERROR(state.SaveJob(job));
    Result<sync::SyncOutcome> outcome =
        request.ok() ? run(*request) : Result<sync::SyncOutcome>(request.status());
    sync::SyncOutcome ended;
    if (outcome.ok()) {
      ended = *outcome;
    } else {
      ended.error = outcome.status().message();
    }
    job.finished_at = now();
    job.state = ended.success ? "succeeded" : "failed";
    job.error = ended.success ? "" : ended.error;
    const long late = SecondsBetween(job.run_at, started);
    store::Message message = SyncEndedMessage(ended, job.started_by, job.finished_at, job.id);
    if (late > 60) {
      message.body +=
          fmt::format(" It ran late: scheduled for {} (UTC), started {}.", job.run_at, started);
    }
    const std::string mail_problem = notify(message);
    job.result = json{{"sync_id", ended.sync_id},
                      {"success", ended.success},
                      {"mail", mail_problem.empty() ? json() : json(mail_problem)}}
                     .dump();
    ENVSYNC_RETURN_IF_ERROR(state.SaveJob(job));
    ran.push_back(job.id);
  }
  return ran;
}

}  // namespace envsync::service
