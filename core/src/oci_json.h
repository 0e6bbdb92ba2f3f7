// Internal to the OCI spec model (core/src/oci_*.cc): checked access to the
// JSON of a spec, and the field tables that drive both parsing and writing
// of the plain records. Not installed; include only from core/src.
//
// Every member access checks the JSON type first: nlohmann::json throws on a
// mismatch (get<>, at()), and nothing here may throw or crash, whatever the
// bytes. Integers are taken only from JSON integers and are range-checked for
// the field they land in, the way Go's encoding/json (and so runc) decodes
// them.
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "hull/core/oci_spec.h"

namespace hull::oci {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

// Propagates an error unchanged: the message already names the field, so a
// context frame would only repeat it.
#define HULL_OCI_CHECK_IMPL(tmp, expr)                           \
  do {                                                           \
    auto tmp = (expr);                                           \
    if (!tmp) return ::hull::Unexpected{std::move(tmp).error()}; \
  } while (0)
#define HULL_OCI_CHECK(expr) HULL_OCI_CHECK_IMPL(HULL_CONCAT(hull_oci_ok_, __LINE__), expr)

#define HULL_OCI_ASSIGN_IMPL(tmp, lhs, expr)                   \
  auto tmp = (expr);                                           \
  if (!tmp) return ::hull::Unexpected{std::move(tmp).error()}; \
  lhs = std::move(tmp).value()
#define HULL_OCI_ASSIGN(lhs, expr) \
  HULL_OCI_ASSIGN_IMPL(HULL_CONCAT(hull_oci_tmp_, __LINE__), lhs, expr)

template <size_t N>
inline bool Contains(const std::array<std::string_view, N>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// A user's value echoed in a message: quoted, cut short and with control
// characters escaped, so a hostile spec cannot flood or forge log lines.
inline std::string Quote(std::string_view value) {
  constexpr size_t kMaxEchoed = 64;
  bool cut = false;
  if (value.size() > kMaxEchoed) {
    size_t end = kMaxEchoed;
    // Do not split a UTF-8 sequence: the message may end up in a protobuf string.
    while (end > 0 && (static_cast<unsigned char>(value[end]) & 0xC0) == 0x80) --end;
    value = value.substr(0, end);
    cut = true;
  }
  std::string out = "`";
  for (char c : value) {
    auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xf];
    } else {
      out += c;
    }
  }
  out += cut ? "...`" : "`";
  return out;
}

inline Unexpected Invalid(const std::string& path, std::string_view what) {
  std::string message = path;
  message += ": ";
  message += what;
  return MakeError(ErrorCode::kInvalidArgument, std::move(message));
}

inline std::string MemberPath(const std::string& path, std::string_view key) {
  if (path.empty()) return std::string(key);
  std::string out = path;
  out += '.';
  out += key;
  return out;
}

inline std::string ElementPath(const std::string& path, size_t index) {
  return path + "[" + std::to_string(index) + "]";
}

// A required name from a fixed set: `known` says whether `value` is in it.
inline Status CheckName(const std::string& value, bool known, const std::string& path,
                        std::string_view kind, std::string_view hint = "") {
  if (value.empty()) return Invalid(path, "is required");
  if (known) return Ok();
  std::string what = "unknown ";
  what += kind;
  what += ' ';
  what += Quote(value);
  what += hint;
  return Invalid(path, what);
}

inline bool IsAbsolute(std::string_view path) { return !path.empty() && path.front() == '/'; }

// --- scalar conversions -------------------------------------------------------

inline Result<std::string> ToString(const Json& value, const std::string& path) {
  if (!value.is_string()) return Invalid(path, "expected a string");
  const auto& text = value.get_ref<const std::string&>();
  // A NUL would silently cut the string short at the next system call.
  if (text.find('\0') != std::string::npos) return Invalid(path, "must not contain a NUL byte");
  return text;
}

template <std::integral T>
requires(!std::same_as<T, bool>) std::string RangeText() {
  return "(" + std::to_string(std::numeric_limits<T>::min()) + " to " +
         std::to_string(std::numeric_limits<T>::max()) + ")";
}

// Only JSON integers: Go's encoding/json refuses 1024.0, "1024" and 1e3 for an
// integer field, and so do we.
template <std::integral T>
requires(!std::same_as<T, bool>) Result<T> ToInteger(const Json& value, const std::string& path) {
  if (value.is_number_unsigned()) {
    auto number = *value.get_ptr<const Json::number_unsigned_t*>();
    if (!std::in_range<T>(number)) {
      return Invalid(path, std::to_string(number) + " is out of range " + RangeText<T>());
    }
    return static_cast<T>(number);
  }
  if (value.is_number_integer()) {
    auto number = *value.get_ptr<const Json::number_integer_t*>();
    if (!std::in_range<T>(number)) {
      return Invalid(path, std::to_string(number) + " is out of range " + RangeText<T>());
    }
    return static_cast<T>(number);
  }
  return Invalid(path, "expected an integer");
}

inline Result<bool> ToBool(const Json& value, const std::string& path) {
  if (!value.is_boolean()) return Invalid(path, "expected a boolean");
  return value.get<bool>();
}

// --- objects ------------------------------------------------------------------

// A JSON object of the spec with its path, for checked access to its members.
class Object {
 public:
  static Result<Object> Of(const Json& value, std::string path) {
    if (!value.is_object()) return Invalid(path, "expected an object");
    return Object(value, std::move(path));
  }

  const std::string& path() const { return path_; }
  std::string PathOf(std::string_view key) const { return MemberPath(path_, key); }

  // The member `key`, or nullptr when it is absent or null (Go decodes a null
  // as the zero value, so runc treats it as absent).
  const Json* Find(std::string_view key) const {
    auto it = value_->find(key);
    if (it == value_->end() || it->is_null()) return nullptr;
    return &*it;
  }

  Status Read(std::string_view key, std::string& out) const {
    const Json* member = Find(key);
    if (member == nullptr) return Ok();
    HULL_OCI_ASSIGN(out, ToString(*member, PathOf(key)));
    return Ok();
  }

  Status Read(std::string_view key, bool& out) const {
    const Json* member = Find(key);
    if (member == nullptr) return Ok();
    HULL_OCI_ASSIGN(out, ToBool(*member, PathOf(key)));
    return Ok();
  }

  Status Read(std::string_view key, std::optional<bool>& out) const {
    const Json* member = Find(key);
    if (member == nullptr) return Ok();
    HULL_OCI_ASSIGN(out, ToBool(*member, PathOf(key)));
    return Ok();
  }

  template <std::integral T>
  requires(!std::same_as<T, bool>) Status Read(std::string_view key, T& out)
  const {
    const Json* member = Find(key);
    if (member == nullptr) return Ok();
    HULL_OCI_ASSIGN(out, ToInteger<T>(*member, PathOf(key)));
    return Ok();
  }

  template <std::integral T>
  requires(!std::same_as<T, bool>) Status Read(std::string_view key, std::optional<T>& out)
  const {
    const Json* member = Find(key);
    if (member == nullptr) return Ok();
    HULL_OCI_ASSIGN(out, ToInteger<T>(*member, PathOf(key)));
    return Ok();
  }

  Status Read(std::string_view key, std::vector<std::string>& out) const {
    return ReadArray(key, out, ToString);
  }

  template <std::integral T>
  requires(!std::same_as<T, bool>) Status Read(std::string_view key, std::vector<T>& out)
  const { return ReadArray(key, out, ToInteger<T>); }

  // A JSON object of strings (annotations, sysctl, unified).
  Status Read(std::string_view key, std::map<std::string, std::string>& out) const {
    const Json* member = Find(key);
    if (member == nullptr) return Ok();
    std::string path = PathOf(key);
    if (!member->is_object()) return Invalid(path, "expected an object");
    out.clear();
    for (const auto& [name, value] : member->items()) {
      std::string value_path = MemberPath(path, name);
      if (!value.is_string()) return Invalid(value_path, "expected a string");
      out.emplace(name, value.get_ref<const std::string&>());
    }
    return Ok();
  }

  // An array whose elements `parse(element, path)` turns into T.
  template <typename T, typename Parse>
  Status ReadArray(std::string_view key, std::vector<T>& out, Parse parse) const {
    const Json* member = Find(key);
    if (member == nullptr) return Ok();
    std::string path = PathOf(key);
    if (!member->is_array()) return Invalid(path, "expected an array");
    out.clear();
    out.reserve(member->size());
    size_t index = 0;
    for (const Json& element : *member) {
      HULL_OCI_ASSIGN(T item, parse(element, ElementPath(path, index)));
      out.push_back(std::move(item));
      ++index;
    }
    return Ok();
  }

  // A nested object that `parse(object, path)` turns into T.
  template <typename T, typename Parse>
  Status ReadObject(std::string_view key, std::optional<T>& out, Parse parse) const {
    const Json* member = Find(key);
    if (member == nullptr) return Ok();
    HULL_OCI_ASSIGN(out, parse(*member, PathOf(key)));
    return Ok();
  }

 private:
  Object(const Json& value, std::string path) : value_(&value), path_(std::move(path)) {}

  const Json* value_;
  std::string path_;
};

// --- field tables -----------------------------------------------------------------
//
// A plain record of the spec (no nested arrays of records) is described once,
// as a tuple of fields in runc's member order; ReadFields parses it and
// WriteFields serialises it from the same table, so a member cannot be read
// under one key and written under another.

template <typename T>
using FieldCheck = Status (*)(const T& value, const std::string& path);

template <typename Record, typename T>
struct Field {
  std::string_view key;
  T Record::*member;
  // Go's omitempty on the writer side: a zero value ("", 0, false, empty
  // array) is not written. A std::optional is written exactly when set.
  bool omit_empty;
  // Runs right after the member is read (present or not), so errors come in
  // member order.
  FieldCheck<T> check;
};

// (clang 14, which builds the fuzzers, has no class template argument
// deduction for aggregates.)
template <typename Record, typename T>
constexpr Field<Record, T> MakeField(std::string_view key, T Record::*member,
                                     bool omit_empty = true,
                                     std::type_identity_t<FieldCheck<T>> check = nullptr) {
  return Field<Record, T>{key, member, omit_empty, check};
}

template <typename T>
struct IsOptional : std::false_type {};
template <typename T>
struct IsOptional<std::optional<T>> : std::true_type {};

template <typename Record, typename T>
Status ReadField(const Object& object, Record& record, const Field<Record, T>& field) {
  HULL_OCI_CHECK(object.Read(field.key, record.*field.member));
  if (field.check != nullptr) return field.check(record.*field.member, object.PathOf(field.key));
  return Ok();
}

template <typename Record, typename... Fields>
Status ReadFields(const Object& object, Record& record, const std::tuple<Fields...>& fields) {
  Status status = Ok();
  std::apply(
      [&](const auto&... field) { (void)((status = ReadField(object, record, field)) && ...); },
      fields);
  return status;
}

// Parses an object whose members are exactly `fields`.
template <typename Record, typename... Fields>
Result<Record> ParseRecord(const Json& value, const std::string& path,
                           const std::tuple<Fields...>& fields) {
  HULL_OCI_ASSIGN(Object object, Object::Of(value, path));
  Record record;
  HULL_OCI_CHECK(ReadFields(object, record, fields));
  return record;
}

template <typename Record, typename T>
void WriteField(OrderedJson& out, const Record& record, const Field<Record, T>& field) {
  const T& value = record.*field.member;
  std::string key(field.key);
  if constexpr (IsOptional<T>::value) {
    if (value) out[key] = *value;
  } else if constexpr (requires { value.empty(); }) {
    if (!field.omit_empty || !value.empty()) out[key] = value;
  } else {
    if (!field.omit_empty || value != T{}) out[key] = value;
  }
}

template <typename Record, typename... Fields>
OrderedJson WriteFields(const Record& record, const std::tuple<Fields...>& fields) {
  OrderedJson out = OrderedJson::object();
  std::apply([&](const auto&... field) { (WriteField(out, record, field), ...); }, fields);
  return out;
}

}  // namespace hull::oci
