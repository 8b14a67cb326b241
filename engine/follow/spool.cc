#include "pgbackfill/follow/spool.h"

#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "pgbackfill/util/status.h"

namespace pgbackfill::follow {

namespace fs = std::filesystem;

namespace {

constexpr char kPrefix[] = "segment-";
constexpr char kSuffix[] = ".spool";
// A record in a segment: payload length (4 bytes), LSN (8), payload; little-endian.
constexpr int64_t kHeaderBytes = 12;

void PutLittleEndian(char* out, uint64_t value, int width) {
  for (int i = 0; i < width; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

uint64_t GetLittleEndian(const char* in, int width) {
  uint64_t value = 0;
  for (int i = width - 1; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(in[i]);
  return value;
}

absl::Status FileError(const char* what, const std::string& path) {
  return absl::InternalError(absl::StrCat("spool: ", what, " ", path, ": ", std::strerror(errno)));
}

}  // namespace

// Memory holds the oldest records; once it is full, every later record goes to segment files until
// the reader has taken all of them, so the order of arrival is the order of Take().
struct Spool::State {
  std::string dir;
  SpoolLimits limits;
  std::deque<SpoolRecord> memory;
  int64_t memory_bytes = 0;
  int64_t records = 0;
  int64_t disk_bytes = 0;
  int64_t disk_records = 0;
  bool spilling = false;
  int64_t read_number = 0;    // the oldest segment not yet removed
  int64_t write_number = -1;  // the newest segment
  int64_t write_size = 0;
  std::ofstream writer;  // open on write_number while it takes records
  std::ifstream reader;  // open on read_number while it is read
  std::string reading_path;
  // Records written to each segment not yet removed, oldest first: a segment must give back as
  // many as went in, or changes were lost.
  std::deque<int64_t> segment_records;
  int64_t read_in_segment = 0;
  // After a failed write the segment's end is unknown: the spool refuses everything after.
  absl::Status failed;

  ~State() { RemoveAll(); }

  std::string SegmentPath(int64_t number) const {
    return (fs::path(dir) / absl::StrCat(kPrefix, number, kSuffix)).string();
  }

  absl::Status StartSegment() {
    ++write_number;
    write_size = 0;
    segment_records.push_back(0);
    const std::string path = SegmentPath(write_number);
    writer.open(path, std::ios::binary | std::ios::trunc);
    if (!writer.is_open()) return FileError("cannot create", path);
    return absl::OkStatus();
  }

  absl::Status CloseWriteSegment() {
    if (!writer.is_open()) return absl::OkStatus();
    writer.flush();
    const bool good = writer.good();
    writer.close();
    if (!good) {
      return failed = FileError("cannot write (is the disk full?)", SegmentPath(write_number));
    }
    return absl::OkStatus();
  }

  absl::Status Spill(uint64_t lsn, std::string_view payload) {
    if (!spilling) {
      spilling = true;
      read_number = write_number + 1;
      RETURN_IF_ERROR(StartSegment());
    } else if (!writer.is_open() || write_size >= limits.segment_bytes) {
      RETURN_IF_ERROR(CloseWriteSegment());
      RETURN_IF_ERROR(StartSegment());
    }
    char header[kHeaderBytes];
    PutLittleEndian(header, payload.size(), 4);
    PutLittleEndian(header + 4, lsn, 8);
    writer.write(header, kHeaderBytes);
    writer.write(payload.data(), static_cast<std::streamsize>(payload.size()));
    if (!writer.good()) {
      return failed = FileError("cannot write (is the disk full?)", SegmentPath(write_number));
    }
    const int64_t size = kHeaderBytes + static_cast<int64_t>(payload.size());
    write_size += size;
    disk_bytes += size;
    ++disk_records;
    ++segment_records.back();
    return absl::OkStatus();
  }

  // The next record of the segment files; every record counted in disk_records is in them.
  absl::StatusOr<SpoolRecord> ReadDisk() {
    while (true) {
      if (!reader.is_open()) {
        // The segment still taking records is closed first, so that all it has is on disk.
        if (read_number == write_number) RETURN_IF_ERROR(CloseWriteSegment());
        reading_path = SegmentPath(read_number);
        reader.open(reading_path, std::ios::binary);
        if (!reader.is_open()) return FileError("cannot open", reading_path);
      }
      if (read_in_segment == segment_records.front()) {
        // Every record of the segment was taken: it must end here.
        if (reader.peek() != std::char_traits<char>::eof()) {
          return failed = absl::DataLossError(
                     absl::StrCat("spool: ", reading_path, " holds more than was written to it"));
        }
        reader.close();
        std::error_code ignored;
        fs::remove(reading_path, ignored);
        ++read_number;
        segment_records.pop_front();
        read_in_segment = 0;
        continue;
      }
      char header[kHeaderBytes];
      reader.read(header, kHeaderBytes);
      SpoolRecord record;
      const uint64_t length = GetLittleEndian(header, 4);
      record.lsn = GetLittleEndian(header + 4, 8);
      // No record is longer than the bytes still spooled (a corrupt length must not allocate).
      const bool fits = static_cast<int64_t>(length) <= disk_bytes - kHeaderBytes;
      if (reader.gcount() == kHeaderBytes && fits) {
        record.payload.resize(length);
        reader.read(record.payload.data(), static_cast<std::streamsize>(length));
      }
      if (!fits || !reader.good()) {
        return failed = absl::DataLossError(absl::StrCat(
                   "spool: ", reading_path, " ends before its record ", read_in_segment + 1, " of ",
                   segment_records.front(), ": changes were lost"));
      }
      ++read_in_segment;
      disk_bytes -= kHeaderBytes + static_cast<int64_t>(length);
      --disk_records;
      return record;
    }
  }

  // After the last spilled record was taken: its segment is removed and memory takes records again.
  void StopSpilling() {
    reader.close();
    std::error_code ignored;
    for (int64_t n = read_number; n <= write_number; ++n) fs::remove(SegmentPath(n), ignored);
    spilling = false;
    read_number = write_number + 1;
    segment_records.clear();
    read_in_segment = 0;
  }

  void RemoveAll() {
    writer.close();
    reader.close();
    std::error_code ignored;
    for (const fs::directory_entry& entry : fs::directory_iterator(dir, ignored)) {
      const std::string name = entry.path().filename().string();
      if (absl::StartsWith(name, kPrefix) && absl::EndsWith(name, kSuffix)) {
        fs::remove(entry.path(), ignored);
      }
    }
  }
};

absl::StatusOr<Spool> Spool::Open(std::string dir, SpoolLimits limits) {
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) {
    return absl::InternalError(absl::StrCat("spool: cannot create ", dir, ": ", error.message()));
  }
  auto state = std::make_unique<State>();
  state->dir = std::move(dir);
  state->limits = limits;
  state->RemoveAll();
  return Spool(std::move(state));
}

Spool::Spool(std::unique_ptr<State> state) : state_(std::move(state)) {}
Spool::Spool(Spool&&) noexcept = default;
Spool& Spool::operator=(Spool&&) noexcept = default;

Spool::~Spool() = default;

absl::Status Spool::Append(uint64_t lsn, std::string_view payload) {
  State& s = *state_;
  RETURN_IF_ERROR(s.failed);
  if (payload.size() > 0x7fffffffu) {  // a CopyData frame is far smaller; the length is 4 bytes
    return absl::InvalidArgumentError(
        absl::StrCat("spool: a ", payload.size(), "-byte record is larger than a change can be"));
  }
  const int64_t size = static_cast<int64_t>(payload.size());
  if (!s.spilling && s.memory_bytes + size <= s.limits.memory_bytes) {
    s.memory.push_back(SpoolRecord{lsn, std::string(payload)});
    s.memory_bytes += size;
  } else {
    RETURN_IF_ERROR(s.Spill(lsn, payload));
  }
  ++s.records;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<SpoolRecord>> Spool::Take() {
  State& s = *state_;
  RETURN_IF_ERROR(s.failed);
  if (!s.memory.empty()) {
    SpoolRecord record = std::move(s.memory.front());
    s.memory.pop_front();
    s.memory_bytes -= static_cast<int64_t>(record.payload.size());
    --s.records;
    return std::optional<SpoolRecord>(std::move(record));
  }
  if (s.disk_records == 0) return std::optional<SpoolRecord>();
  ASSIGN_OR_RETURN(SpoolRecord record, s.ReadDisk());
  --s.records;
  if (s.disk_records == 0) s.StopSpilling();
  return std::optional<SpoolRecord>(std::move(record));
}

int64_t Spool::records() const { return state_->records; }
int64_t Spool::memory_bytes() const { return state_->memory_bytes; }
int64_t Spool::disk_bytes() const { return state_->disk_bytes; }

}  // namespace pgbackfill::follow
