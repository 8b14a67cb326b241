// How the data mover carries each column from source to target (pure).
//
// FORMAT binary passes values in their binary send/receive form: the cheapest for both servers,
// but only sound when both sides have the same built-in type (the binary form of arrays and
// composites names element types by OID, and the OIDs of user-defined types differ between
// databases). Where the types differ, or are user-defined, the stream is text: the target then
// parses the source's text output with its own input function, which is sound only where every
// text the source type prints is valid input for the target type (a wider integer, any type into
// a string). Anything else is refused in preflight, naming the column: cast it in `columns:`
// (evaluated on the source) so that both sides agree.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pgbackfill::move {

// PostgreSQL's FirstNormalObjectId: OIDs below it are the built-in objects, the same in every
// database of every cluster of one major version.
inline constexpr uint32_t kFirstNormalObjectId = 16384;

struct ColumnTypes {
  std::string column;       // the target column
  std::string source_type;  // format_type(oid, NULL) of the expression on the source
  uint32_t source_oid = 0;
  std::string target_type;  // format_type(oid, NULL) of the column on the target
  uint32_t target_oid = 0;
};

enum class Carry {
  kBinary,   // the same built-in type on both sides
  kText,     // text output of the source type is always valid input of the target type
  kRefused,  // neither: the plan must cast the expression
};

Carry HowToCarry(const ColumnTypes& types);

struct FormatChoice {
  bool binary = true;
  std::vector<std::string>
      text_because;             // "column "x": integer on the source, bigint in the target"
  std::vector<size_t> refused;  // indices into the input of kRefused columns
};

// The stream's format: binary when every column can go binary, else text (one COPY has one
// format). `refused` non-empty means the plan cannot run.
FormatChoice ChooseFormat(const std::vector<ColumnTypes>& columns);

}  // namespace pgbackfill::move
