#include "pgbackfill/cli/metrics_endpoint.h"

#include <ostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "pgbackfill/metrics/registry.h"
#include "pgbackfill/metrics/server.h"
#include "pgbackfill/util/status.h"

namespace pgbackfill::cli {
namespace {

// Every event to the renderer and the registry. Members are destroyed bottom up: the server
// (and its thread, the registry's only other reader) stops before the registry goes.
class MetricsTee : public events::EventSink {
 public:
  MetricsTee(std::unique_ptr<events::EventSink> renderer,
             std::unique_ptr<metrics::MetricsSink> registry)
      : renderer_(std::move(renderer)), registry_(std::move(registry)) {}
  ~MetricsTee() override {
    if (server_ != nullptr && linger_ > absl::ZeroDuration()) absl::SleepFor(linger_);
  }
  MetricsTee(const MetricsTee&) = delete;
  MetricsTee& operator=(const MetricsTee&) = delete;

  void LingerFor(absl::Duration linger) { linger_ = linger; }
  events::EventSink& registry() { return *registry_; }

  void Serve(std::unique_ptr<metrics::MetricsServer> server) { server_ = std::move(server); }

  void Emit(const events::Event& event) override {
    registry_->Emit(event);
    renderer_->Emit(event);
  }

 private:
  std::unique_ptr<events::EventSink> renderer_;
  std::unique_ptr<metrics::MetricsSink> registry_;
  std::unique_ptr<metrics::MetricsServer> server_;
  absl::Duration linger_ = absl::ZeroDuration();
};

}  // namespace

absl::StatusOr<CommandSinks> WithMetrics(const MetricsOptions& options, std::string job,
                                         std::unique_ptr<events::EventSink> renderer,
                                         std::ostream& log) {
  if (options.address.empty())
    return CommandSinks{.all = std::move(renderer), .metrics_only = nullptr};
  absl::Duration linger;
  if (!absl::ParseDuration(options.linger, &linger) || linger < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("--metrics-linger ", options.linger,
                                                   ": expected a duration such as 30s or 1m"));
  }
  auto registry = std::make_unique<metrics::MetricsSink>(std::move(job));
  metrics::MetricsSink& reader = *registry;
  auto tee = std::make_unique<MetricsTee>(std::move(renderer), std::move(registry));
  ASSIGN_OR_RETURN(
      std::unique_ptr<metrics::MetricsServer> server,
      metrics::MetricsServer::Start(options.address, [&reader] { return reader.Render(); }));
  log << "pgbackfill: metrics at http://" << server->address() << "/metrics" << std::endl;
  tee->Serve(std::move(server));
  tee->LingerFor(linger);
  events::EventSink& registry_alone = tee->registry();
  return CommandSinks{.all = std::move(tee), .metrics_only = &registry_alone};
}

}  // namespace pgbackfill::cli
