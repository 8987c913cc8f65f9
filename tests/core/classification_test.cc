#include "envsync/core/classification.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "envsync/core/comparison.h"

namespace envsync {
namespace {

constexpr char kScenarioFile[] = ENVSYNC_SOURCE_DIR "/tests/scenarios/classification.txt";

// One line of the scenario file: a pair state, a mode and the expected classification.
struct Scenario {
  int line = 0;
  int row = 0;  // the §3 table row, 1..13
  Mode mode = Mode::kAll;
  PairState pair;
  Classification expected;
};

// A hash label: '-' is absent, a letter is a hash (the same letter, the same hash).
bool ParseHash(const std::string& label, std::optional<uint64_t>* out) {
  if (label == "-") {
    *out = std::nullopt;
    return true;
  }
  if (label.size() != 1 || label[0] < 'A' || label[0] > 'Z') return false;
  *out = static_cast<uint64_t>(label[0] - 'A' + 1);
  return true;
}

// yes / no, or '-' for "does not apply" (then `*out` keeps its default).
bool ParseFlag(const std::string& text, bool* out) {
  if (text == "yes") {
    *out = true;
  } else if (text == "no") {
    *out = false;
  } else if (text != "-") {
    return false;
  }
  return true;
}

// Parses one non-comment line; returns an error message, or "" when it parsed.
std::string ParseScenario(const std::vector<std::string>& cols, Scenario* s) {
  if (cols.size() != 13) return "expected 13 columns, got " + std::to_string(cols.size());
  if (cols[7] != "->") return "expected '->' as the 8th column";
  try {
    s->row = std::stoi(cols[0]);
  } catch (...) {
    return "bad row number '" + cols[0] + "'";
  }
  if (s->row < 1 || s->row > 13) return "row must be 1..13";
  const std::optional<Mode> mode = ParseMode(cols[1]);
  if (!mode) return "bad mode '" + cols[1] + "'";
  s->mode = *mode;
  if (!ParseHash(cols[2], &s->pair.source) || !ParseHash(cols[3], &s->pair.target) ||
      !ParseHash(cols[4], &s->pair.base)) {
    return "bad hash label";
  }
  if (!ParseFlag(cols[5], &s->pair.keys_equal)) return "bad keys_equal '" + cols[5] + "'";
  if (!ParseFlag(cols[6], &s->pair.key_on_target_elsewhere)) {
    return "bad key_elsewhere '" + cols[6] + "'";
  }
  if (cols[8] == "no") {
    for (int i = 9; i < 13; ++i) {
      if (cols[i] != "-") return "an unlisted scenario takes '-' after 'no'";
    }
    s->expected = Classification{};
    return "";
  }
  if (cols[8] != "yes") return "listed must be yes or no";
  s->expected.listed = true;
  const std::optional<Tab> tab = ParseTab(cols[9]);
  if (!tab) return "bad tab '" + cols[9] + "'";
  s->expected.tab = *tab;
  s->expected.conflict = Conflict::kNone;
  if (cols[10] != "-") {
    const std::optional<Conflict> conflict = ParseConflict(cols[10]);
    if (!conflict) return "bad conflict '" + cols[10] + "'";
    s->expected.conflict = *conflict;
  }
  s->expected.reason = Reason::kNone;
  if (cols[11] != "-") {
    const std::optional<Reason> reason = ParseReason(cols[11]);
    if (!reason) return "bad reason '" + cols[11] + "'";
    s->expected.reason = *reason;
  }
  if (cols[12] != "yes" && cols[12] != "no") return "selected must be yes or no";
  s->expected.selected = cols[12] == "yes";
  return "";
}

// Reads the scenario file; malformed lines are reported as test failures with their number.
std::vector<Scenario> LoadScenarios() {
  std::vector<Scenario> scenarios;
  std::ifstream in(kScenarioFile);
  if (!in) {
    ADD_FAILURE() << "cannot read " << kScenarioFile;
    return scenarios;
  }
  std::string text;
  int line_no = 0;
  while (std::getline(in, text)) {
    ++line_no;
    if (const size_t hash = text.find('#'); hash != std::string::npos) text.erase(hash);
    std::istringstream words(text);
    std::vector<std::string> cols;
    for (std::string word; words >> word;) cols.push_back(word);
    if (cols.empty()) continue;
    Scenario scenario;
    scenario.line = line_no;
    const std::string error = ParseScenario(cols, &scenario);
    if (!error.empty()) {
      ADD_FAILURE() << kScenarioFile << ":" << line_no << ": " << error;
      continue;
    }
    scenarios.push_back(scenario);
  }
  return scenarios;
}

std::string Describe(const Classification& c) {
  if (!c.listed) return "not listed";
  std::string out = "listed tab=" + std::string(TabName(c.tab));
  out += " conflict=" + std::string(c.conflict == Conflict::kNone ? "-" : ConflictName(c.conflict));
  out += " reason=" + std::string(c.reason == Reason::kNone ? "-" : ReasonName(c.reason));
  out += c.selected ? " selected" : " not-selected";
  return out;
}

bool Same(const Classification& a, const Classification& b) {
  if (a.listed != b.listed) return false;
  if (!a.listed) return true;
  return a.tab == b.tab && a.conflict == b.conflict && a.reason == b.reason &&
         a.selected == b.selected;
}

// Every line of the scenario file is well-formed (malformed lines fail inside LoadScenarios).
TEST(ClassificationScenarios, FileParses) {
  const std::vector<Scenario> scenarios = LoadScenarios();
  EXPECT_FALSE(scenarios.empty());
}

// Mode all covers each of the 13 rows of the §3 table (so at least 13 scenarios).
TEST(ClassificationScenarios, ModeAllCoversEveryRowOfTheTable) {
  std::set<int> rows;
  int count = 0;
  for (const Scenario& s : LoadScenarios()) {
    if (s.mode != Mode::kAll) continue;
    rows.insert(s.row);
    ++count;
  }
  EXPECT_GE(count, 13);
  for (int row = 1; row <= 13; ++row) EXPECT_TRUE(rows.contains(row)) << "§3 row " << row;
}

// Mode new covers each of the 13 rows of the §3 table as well.
TEST(ClassificationScenarios, ModeNewCoversEveryRowOfTheTable) {
  std::set<int> rows;
  for (const Scenario& s : LoadScenarios()) {
    if (s.mode == Mode::kNew) rows.insert(s.row);
  }
  for (int row = 1; row <= 13; ++row) EXPECT_TRUE(rows.contains(row)) << "§3 row " << row;
}

// Classify returns what each scenario line expects, in both modes.
TEST(ClassificationScenarios, ClassifyMatchesEveryScenario) {
  for (const Scenario& s : LoadScenarios()) {
    const Classification got = Classify(s.pair, s.mode);
    EXPECT_TRUE(Same(got, s.expected))
        << kScenarioFile << ":" << s.line << " (§3 row " << s.row << ", mode " << ModeName(s.mode)
        << "): expected " << Describe(s.expected) << ", got " << Describe(got);
  }
}

}  // namespace
}  // namespace envsync
