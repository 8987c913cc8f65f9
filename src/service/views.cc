#include "envsync/service/views.h"

#include <nlohmann/json.hpp>

#include "envsync/service/time_zone.h"

namespace envsync::service {
namespace {

using nlohmann::json;

json ParsedOrNull(const std::string& text) {
  if (text.empty()) return json();
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? json() : j;
}

json TextOrNull(const std::string& text) { return text.empty() ? json() : json(text); }

}  // namespace

json JobJson(const store::Job& j, const std::string& zone) {
  json out = {{"job_id", j.id},
              {"kind", j.kind},
              {"state", j.state},
              {"run_at", j.run_at},
              {"created_at", j.created_at},
              {"started_at", TextOrNull(j.started_at)},
              {"finished_at", TextOrNull(j.finished_at)},
              {"started_by", j.started_by},
              {"request", ParsedOrNull(j.request)},
              {"result", ParsedOrNull(j.result)},
              {"error", TextOrNull(j.error)},
              {"runner", TextOrNull(j.runner)}};
  if (!zone.empty()) out["run_at_local"] = ShowInZone(j.run_at, zone);
  return out;
}

json MessageJson(const store::Message& m, const std::string& job_state) {
  json out = {{"id", m.id},       {"user", m.user},          {"created_at", m.created_at},
              {"title", m.title}, {"body", m.body},          {"job_id", TextOrNull(m.job_id)},
              {"read", m.read},   {"actions", json::array()}};
  // A scheduled or queued job can still be cancelled from its message.
  if (!m.job_id.empty() && (job_state == "scheduled" || job_state == "queued")) {
    out["actions"].push_back({{"action", "cancel"},
                              {"method", "POST"},
                              {"href", "/api/v1/syncs/" + m.job_id + "/cancel"}});
  }
  return out;
}

json SyncRunJson(const store::SyncRun& r) {
  return {{"sync_id", r.id},
          {"comparison_id", r.comparison_id},
          {"from", r.from},
          {"to", r.to},
          {"started_by", r.started_by},
          {"started_at", r.created_at},
          {"finished_at", TextOrNull(r.finished_at)},
          {"test_import", r.test_import},
          {"status", r.status},
          {"applied", r.applied.empty() ? json::object() : ParsedOrNull(r.applied)},
          {"error", TextOrNull(r.error)}};
}

json OutcomeJson(const sync::SyncOutcome& o) {
  json timings = json::object();
  for (const auto& [phase, seconds] : o.timings) timings[phase] = seconds;
  json modules = json::object();
  for (const auto& [name, c] : o.per_module) {
    modules[name] = {{"new", c.new_records}, {"modified", c.modified}, {"deleted", c.deleted}};
  }
  return {{"sync_id", o.sync_id},
          {"status", o.success ? "success" : "failure"},
          {"test_import", o.test_import},
          {"applied",
           {{"new", o.applied.new_records},
            {"modified", o.applied.modified},
            {"deleted", o.applied.deleted}}},
          {"modules", modules},
          {"files", o.files},
          {"timings", timings},
          {"error", o.success ? json() : json(o.error)}};
}

json AuditJson(const store::AuditEntry& e) {
  return {{"id", e.id},         {"at", e.at},         {"user", e.user},
          {"action", e.action}, {"target", e.target}, {"detail", ParsedOrNull(e.detail)}};
}

}  // namespace envsync::service
