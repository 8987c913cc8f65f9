#include "service/runner.h"

#include <fmt/format.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <mutex>
#include <nlohmann/json.hpp>

#include "envsync/service/jobs.h"
#include "envsync/service/server.h"
#include "envsync/service/users.h"
#include "sync/ids.h"

namespace envsync::service {

std::string RunnerName() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return fmt::format("{}:{}:{}", host, getpid(), RandomToken(4));
}

void LogJob(const store::Job& job) {
  spdlog::info("job {} ({}) {} by {}{}", job.id, job.kind, job.state, job.started_by,
               job.error.empty() ? "" : ": " + job.error);
  const nlohmann::json result =
      nlohmann::json::parse(job.result.empty() ? "{}" : job.result, nullptr, false);
  if (result.is_object() && result.contains("mail") && result["mail"].is_string()) {
    spdlog::warn("job {}: mail not delivered: {}", job.id, result["mail"].get<std::string>());
  }
}

void UseStderrLogger() {
  static std::once_flag once;
  std::call_once(once, [] {
    auto logger = spdlog::stderr_logger_mt("envsync");
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    spdlog::set_default_logger(logger);
    spdlog::flush_on(spdlog::level::info);
  });
}

Status RunJobsOnce(const Workspace& workspace) {
  UseStderrLogger();
  auto state = workspace.OpenState([](const std::string& line) { spdlog::info("{}", line); });
  if (!state.ok()) return state.status();
  {
    // Jobs left running are settled only while nobody else works on the store; otherwise their
    // process is alive, or settles them itself.
    store::WorkLock lock;
    auto acquired = lock.TryAcquire(workspace.config().state);
    if (!acquired.ok()) return acquired.status();
    if (*acquired) {
      auto jobs = RecoverInterruptedJobs(**state, sync::UtcNow(),
                                         [&](const store::Message& m, const std::string& link) {
                                           return workspace.Notify(**state, m, link);
                                         });
      if (!jobs.ok()) return jobs.status();
    }
  }  // the jobs below take the store's job lock, which this one excludes
  auto ran = workspace.RunDueJobs(**state, "", LogJob, nullptr, nullptr, RunnerName());
  return ran.ok() ? Status::Ok() : ran.status();
}

}  // namespace envsync::service
