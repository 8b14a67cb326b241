#include "proxy/tcp_proxy.h"

#include <deque>
#include <future>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

namespace pgbackfill::proxy {

using boost::asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

struct AcceptorHolder {
  tcp::acceptor acceptor;
};

// One proxied connection: two sockets, and per direction a reader that stamps chunks with their
// due time and a writer that sends them when due, so a delay adds latency without capping
// throughput at one chunk per delay.
struct TcpProxy::Session {
  Session(TcpProxy* proxy, tcp::socket client_socket)
      : owner(proxy),
        client(std::move(client_socket)),
        server(client.get_executor()),
        generation(proxy->generation_.load()) {}

  struct Chunk {
    Clock::time_point due;
    std::vector<char> bytes;
  };
  struct Direction {
    std::deque<Chunk> queue;
    std::unique_ptr<asio::steady_timer> wake;
    bool eof = false;
  };

  TcpProxy* owner;
  tcp::socket client;
  tcp::socket server;
  uint64_t generation;
  bool last_from_server = true;  // a fresh connection's first client bytes start a turn
  Direction up;                  // client -> server
  Direction down;                // server -> client

  void Close() {
    error_code ignored;
    client.close(ignored);
    server.close(ignored);
    if (up.wake) up.wake->cancel();
    if (down.wake) down.wake->cancel();
  }

  bool Stale() const { return generation != owner->generation_.load(); }

  // Every coroutine takes the session's shared_ptr as a parameter: parameters live in the
  // coroutine frame, so the session outlives all of them (a local taken in the body would be too
  // late: the body first runs after the spawner may have dropped its reference).
  static asio::awaitable<void> Read(std::shared_ptr<Session> self, tcp::socket& from,
                                    Direction& dir, bool from_client) {
    TcpProxy* owner = self->owner;
    std::vector<char> buffer(64 * 1024);
    while (true) {
      error_code ec;
      size_t n = co_await from.async_read_some(asio::buffer(buffer),
                                               asio::redirect_error(asio::use_awaitable, ec));
      if (ec || self->Stale()) break;
      if (from_client) {
        if (self->last_from_server) owner->client_turns_.fetch_add(1);
        self->last_from_server = false;
        owner->client_bytes_.fetch_add(static_cast<int64_t>(n));
      } else {
        self->last_from_server = true;
      }
      dir.queue.push_back(
          Chunk{Clock::now() + owner->options_.one_way_delay,
                std::vector<char>(buffer.begin(), buffer.begin() + static_cast<long>(n))});
      dir.wake->cancel();
    }
    dir.eof = true;
    dir.wake->cancel();
  }

  static asio::awaitable<void> Write(std::shared_ptr<Session> self, tcp::socket& to,
                                     Direction& dir) {
    while (true) {
      if (self->Stale()) break;
      if (dir.queue.empty()) {
        if (dir.eof) break;
        dir.wake->expires_at(Clock::time_point::max());
        error_code ignored;
        co_await dir.wake->async_wait(asio::redirect_error(asio::use_awaitable, ignored));
        continue;
      }
      Chunk& front = dir.queue.front();
      if (front.due > Clock::now()) {
        asio::steady_timer timer(to.get_executor(), front.due);
        error_code ignored;
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
      }
      error_code ec;
      co_await asio::async_write(to, asio::buffer(front.bytes),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      dir.queue.pop_front();
    }
    self->Close();
  }

  static asio::awaitable<void> Run(std::shared_ptr<Session> self) {
    auto executor = self->client.get_executor();
    Direction& up = self->up;
    Direction& down = self->down;
    tcp::socket& client = self->client;
    tcp::socket& server = self->server;
    TcpProxy* owner = self->owner;
    up.wake = std::make_unique<asio::steady_timer>(executor);
    down.wake = std::make_unique<asio::steady_timer>(executor);
    error_code ec;
    co_await server.async_connect(owner->upstream_, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      self->Close();
      co_return;
    }
    server.set_option(tcp::no_delay(true));
    client.set_option(tcp::no_delay(true));
    asio::co_spawn(executor, Read(self, client, up, true), asio::detached);
    asio::co_spawn(executor, Write(self, server, up), asio::detached);
    asio::co_spawn(executor, Read(self, server, down, false), asio::detached);
    asio::co_spawn(executor, Write(self, client, down), asio::detached);
  }
};

TcpProxy::TcpProxy(Options options)
    : options_(std::move(options)),
      // Parsed here rather than for every accepted connection, where a bad address would only
      // show as connections closed at once.
      upstream_(asio::ip::make_address(options_.upstream_host), options_.upstream_port) {
  acceptor_.reset(new AcceptorHolder{tcp::acceptor(
      io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), options_.listen_port))});
  port_ = acceptor_->acceptor.local_endpoint().port();
  asio::co_spawn(io_, Accept(), asio::detached);
  thread_ = std::thread([this] { io_.run(); });
}

TcpProxy::~TcpProxy() {
  io_.stop();
  thread_.join();
}

asio::awaitable<void> TcpProxy::Accept() {
  while (true) {
    error_code ec;
    tcp::socket socket =
        co_await acceptor_->acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    accepted_.fetch_add(1);
    auto session = std::make_shared<Session>(this, std::move(socket));
    std::erase_if(sessions_, [](const std::weak_ptr<Session>& weak) { return weak.expired(); });
    sessions_.push_back(session);
    asio::co_spawn(io_, Session::Run(session), asio::detached);
  }
}

void TcpProxy::ResetCounters() {
  client_turns_.store(0);
  client_bytes_.store(0);
}

void TcpProxy::CutAll() {
  // The sockets live on the proxy thread: close them there, and wait until it is done so that the
  // caller can rely on every connection being gone when this returns.
  std::promise<void> done;
  asio::post(io_, [this, &done] {
    generation_.fetch_add(1);
    for (const std::weak_ptr<Session>& weak : sessions_) {
      if (auto session = weak.lock()) session->Close();
    }
    sessions_.clear();
    done.set_value();
  });
  done.get_future().wait();
}

}  // namespace pgbackfill::proxy
