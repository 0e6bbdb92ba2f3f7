#include "hull/core/ids.h"

#include <cctype>
#include <string>

namespace hull {

Status ValidateId(std::string_view kind, std::string_view id) {
  auto bad = [&](std::string_view why) {
    return MakeError(ErrorCode::kInvalidArgument, "invalid " + std::string(kind) + " id `" +
                                                      std::string(id.substr(0, 100)) +
                                                      "`: " + std::string(why));
  };
  if (id.empty()) return bad("empty");
  if (id.size() > kMaxIdLength)
    return bad("longer than " + std::to_string(kMaxIdLength) + " characters");
  bool after_separator = true;  // the start behaves like a separator
  for (char c : id) {
    bool alnum = std::isalnum(static_cast<unsigned char>(c)) != 0;
    if (alnum) {
      after_separator = false;
      continue;
    }
    if (c != '.' && c != '_' && c != '-')
      return bad("only letters, digits, `.`, `_` and `-` are allowed");
    if (after_separator) return bad("a separator must sit between letters or digits");
    after_separator = true;
  }
  if (after_separator) return bad("must end with a letter or digit");
  return Ok();
}

}  // namespace hull
