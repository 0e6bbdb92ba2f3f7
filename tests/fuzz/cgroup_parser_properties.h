// What the cgroup file parsers (agent/engine/cgroup.h) promise for any input,
// checked by the cgroup_parser_fuzz target and by CgroupParseTest on random
// text: a result that parses is consistent with the text it came from, and a
// refusal is an error with a code and a message, never a crash.
#pragma once

#include <cctype>
#include <string>
#include <string_view>

#include "engine/cgroup.h"

namespace hull::engine::testing {

inline std::string_view TrimForCheck(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

inline size_t CountLines(std::string_view text) {
  size_t lines = text.empty() ? 0 : 1;
  for (char c : text) lines += c == '\n';
  return lines;
}

// nullptr when every parser kept its promise on `text`, else which did not.
inline const char* CgroupParserViolation(std::string_view text) {
  if (auto values = ParseFlatKeyed(text)) {
    if (values->size() > CountLines(text)) return "ParseFlatKeyed: more keys than lines";
    for (const auto& [key, value] : *values) {
      if (key.empty() || text.find(key) == std::string_view::npos) {
        return "ParseFlatKeyed: a key that is not in the text";
      }
    }
  } else if (values.error().code() != ErrorCode::kInternal || values.error().message().empty()) {
    return "ParseFlatKeyed: an error without code or message";
  }

  if (auto devices = ParseIoStat(text)) {
    if (devices->size() > CountLines(text)) return "ParseIoStat: more devices than lines";
  } else if (devices.error().code() != ErrorCode::kInternal || devices.error().message().empty()) {
    return "ParseIoStat: an error without code or message";
  }

  if (auto value = ParseUintOrMax(text)) {
    std::string_view trimmed = TrimForCheck(text);
    if (!value->has_value()) {
      if (trimmed != "max") return "ParseUintOrMax: nullopt for something other than max";
    } else {
      for (char c : trimmed) {
        if (c < '0' || c > '9') return "ParseUintOrMax: a number from a non-digit";
      }
    }
  }

  if (auto pids = ParseCgroupProcs(text)) {
    if (pids->size() > CountLines(text)) return "ParseCgroupProcs: more pids than lines";
    for (pid_t pid : *pids) {
      if (pid <= 0) return "ParseCgroupProcs: a pid that is not positive";
    }
  }

  if (ValidateCgroupRelativePath(text)) {
    if (text.empty() || text.front() == '/' || text.back() == '/') {
      return "ValidateCgroupRelativePath: accepted an empty or absolute path";
    }
    if (text.find('\0') != std::string_view::npos || text.find("//") != std::string_view::npos) {
      return "ValidateCgroupRelativePath: accepted NUL or an empty component";
    }
    std::string padded = "/" + std::string(text) + "/";
    if (padded.find("/../") != std::string::npos || padded.find("/./") != std::string::npos) {
      return "ValidateCgroupRelativePath: accepted . or ..";
    }
  }
  return nullptr;
}

}  // namespace hull::engine::testing
