// tests/cpp/test_tcpframe_hpp.cpp -- tcpframe/tcpframe.hpp, the idiomatic C++20 layer: Config,
// Result/Error, Loop, Future, SyncConn/SyncServer, AsyncConn/AsyncServer/AsyncClient, Op
// callbacks (no allocation per operation), message-stream mode, destruction from callbacks,
// statistics, connection events, the log hook and SyncConn::sendv.
#include <tcpframe/tcpframe.hpp>

#include <sys/socket.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <semaphore>
#include <thread>
#include <vector>

#include "tu_cpp.hpp"

// Every C++ allocation of the process is counted (the Op test checks that a round trip makes
// none). The C library allocates with malloc and is not counted.
static std::atomic<uint64_t> g_news{0};
// noinline: inlined into callers, the malloc/free pair trips gcc's mismatched-new-delete check.
__attribute__((noinline)) void *operator new(std::size_t n)
{
    g_news.fetch_add(1, std::memory_order_relaxed);
    if (void *p = std::malloc(n == 0 ? 1 : n))
        return p;
    throw std::bad_alloc();
}
__attribute__((noinline)) void operator delete(void *p) noexcept
{
    std::free(p);
}
__attribute__((noinline)) void operator delete(void *p, std::size_t) noexcept
{
    std::free(p);
}

namespace tf = tcpframe;
using namespace std::chrono_literals;

namespace
{

template <typename T> tf::Result<T> await(tf::Future<T> &&f)
{
    EXPECT_TRUE(f.wait_for(tu::kWatchdog).has_value()) << "future not ready (hang)";
    return f.get();
}

// A view of |s| (a literal lives for the whole program: safe for borrowed async sends).
std::span<const uint8_t> bytes(std::string_view s)
{
    return {reinterpret_cast<const uint8_t *>(s.data()), s.size()};
}

// A started loop, an async connection on it and a blocking peer, over a socketpair.
class Pair : public tu::FdCheck
{
  protected:
    void make(const tf::Config &acfg = {}, const tf::Config &scfg = {})
    {
        loop = std::move(tf::Loop::create()).value();
        ASSERT_TRUE(loop.start());
        int sv[2];
        ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        auto a = tf::AsyncConn::from_fd(loop, sv[0], acfg);
        ASSERT_TRUE(a) << a.error().what();
        conn = std::move(a).value();
        auto s = tf::SyncConn::from_fd(sv[1], scfg); // the async side answers on the loop
        ASSERT_TRUE(s) << s.error().what();
        peer = std::move(s).value();
    }
    void TearDown() override
    {
        conn = tf::AsyncConn();
        peer = tf::SyncConn();
        loop = tf::Loop(nullptr);
        tu::FdCheck::TearDown();
    }
    tf::Loop loop{nullptr};
    tf::AsyncConn conn;
    tf::SyncConn peer;
};

} // namespace

TEST(Config, DefaultsAreTheCLibrarysDefaults)
{
    auto same = [](const tf_tcp_config &a, const tf_tcp_config &b) {
    // clang-format off
#define F(x) EXPECT_EQ(a.x, b.x) << #x;
        F(size) F(connect_timeout_ms) F(sndbuf) F(rcvbuf) F(nodelay) F(keepalive)
        F(keepalive_idle_s) F(keepalive_intvl_s) F(keepalive_cnt) F(user_timeout_ms)
        F(listen_backlog) F(accept_retries) F(connect_retries) F(retry_delay_ms)
        F(retry_max_delay_ms) F(handshake_timeout_ms) F(max_recv_len) F(max_send_len)
        F(handshake) F(send_queue_bytes) F(send_queue_msgs) F(send_low_water) F(recv_queue_ops)
        F(read_buffer) F(linger_ms) F(accept_queue) F(ip_tos) F(priority) F(sock_cb)
        F(sock_cb_arg) F(recv_mem_budget) F(idle_timeout_ms) F(progress_timeout_ms) F(max_conns)
        F(io_budget)
#undef F
            // clang-format on
            EXPECT_STREQ(a.bind_device, b.bind_device);
        EXPECT_STREQ(a.local_addr, b.local_addr);
    };
    tf_tcp_config want;
    tf_tcp_config_init(&want);
    same(want, tf::Config{}.to_c());
    tf_tcp_config_init_os(&want);
    same(want, tf::Config::os_defaults().to_c());
    same(want, tf::Config::from_c(want).to_c());
    tf::Config named;
    named.bind_device = "lo";
    named.local_addr = "127.0.0.1:0";
    named.idle_timeout = 250ms;
    tf_tcp_config n = named.to_c();
    EXPECT_STREQ(n.bind_device, "lo");
    EXPECT_EQ(n.idle_timeout_ms, 250);
    same(n, tf::Config::from_c(n).to_c());
    EXPECT_TRUE(named.validate());
    named.local_addr = "localhost:0"; // numeric only
    EXPECT_FALSE(named.validate());
    EXPECT_FALSE(tf::Config::os_defaults().nodelay.has_value());
    EXPECT_TRUE(tf::Config{}.validate());
}

TEST(Config, ValidateNamesTheBadField)
{
    tf::Config c;
    c.sndbuf = 0;
    auto r = c.validate();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), TF_ERR_INVALID_ARGUMENT);
    EXPECT_NE(r.error().what().find("sndbuf"), std::string::npos) << r.error().what();
    // ... and every call that takes it refuses it the same way.
    auto s = tf::SyncServer::listen("127.0.0.1:0", c);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, TF_ERR_INVALID_ARGUMENT);
}

TEST(Result, ValueErrorAndMessages)
{
    tf::Result<int> ok(3);
    ASSERT_TRUE(ok);
    EXPECT_EQ(*ok, 3);
    EXPECT_EQ(ok.code(), TF_OK);
    tf::Result<int> bad(tf::Error(TF_ERR_IO, ECONNREFUSED));
    ASSERT_FALSE(bad);
    EXPECT_STREQ(bad.error().name(), "IO");
    EXPECT_NE(bad.error().what().find(std::strerror(ECONNREFUSED)), std::string::npos);
    EXPECT_EQ(std::move(bad).value_or(7), 7);
    tf::Result<void> v = tf::Error(TF_ERR_TIMEOUT, 0, "no reply within 5 ms");
    EXPECT_EQ(v.error().what(), "no reply within 5 ms");
}

class Loop : public tu::FdCheck
{
};

TEST_F(Loop, DispatchInOrderWaitAndTimer)
{
    auto loop = std::move(tf::Loop::create()).value();
    ASSERT_TRUE(loop.start());
    std::vector<int> seen;
    for (int i = 0; i < 4; i++)
        ASSERT_TRUE(loop.dispatch([&seen, i] { seen.push_back(i); }));
    bool on_loop = false;
    ASSERT_TRUE(loop.dispatch_and_wait([&] { on_loop = loop.in_loop_thread(); }));
    EXPECT_TRUE(on_loop);
    EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3}));
    std::binary_semaphore fired{0};
    ASSERT_TRUE(loop.after(1ms, [&] { fired.release(); }));
    EXPECT_TRUE(fired.try_acquire_for(tu::kWatchdog));
    loop.stop();
    auto late = loop.dispatch([] {});
    ASSERT_FALSE(late);
    EXPECT_EQ(late.code(), TF_ERR_SHUTDOWN);
}

class Fd : public tu::FdCheck
{
};

TEST_F(Fd, ServersAdoptAListeningSocket)
{
    int port = 0;
    int lsn = tu::rawListen(AF_INET, "127.0.0.1", &port);
    ASSERT_GE(lsn, 0);
    auto srv = tf::SyncServer::adopt(lsn);
    ASSERT_TRUE(srv) << srv.error().what();
    EXPECT_EQ(srv->port(), port);
    std::thread t([&] { EXPECT_TRUE(srv->accept()); });
    auto c = tf::SyncConn::connect("127.0.0.1:" + std::to_string(port));
    ASSERT_TRUE(c) << c.error().what();
    t.join();

    auto loop = std::move(tf::Loop::create()).value();
    ASSERT_TRUE(loop.start());
    auto as = std::move(tf::AsyncServer::create(loop)).value();
    int port2 = 0;
    int lsn2 = tu::rawListen(AF_INET6, "::1", &port2);
    ASSERT_GE(lsn2, 0);
    ASSERT_TRUE(as.adopt(lsn2));
    auto f = as.accept();
    auto c2 = tf::SyncConn::connect("[::1]:" + std::to_string(port2));
    ASSERT_TRUE(c2) << c2.error().what();
    auto a = await(std::move(f));
    ASSERT_TRUE(a);
    EXPECT_EQ(as.active(), 1u);
    EXPECT_EQ(as.mem_use().waits, 0u);
    auto bad = tf::SyncServer::adopt(::dup(c->fd())); // a connected socket is not a listener
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, TF_ERR_INVALID_ARGUMENT);
}

TEST_F(Fd, LoopWatchesAnFdWithABorrowedCallable)
{
    auto loop = std::move(tf::Loop::create()).value();
    ASSERT_TRUE(loop.start());
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    std::binary_semaphore seen{0};
    unsigned got = 0;
    auto on_ready = [&](unsigned ready) {
        char c;
        (void)::read(sv[0], &c, 1);
        got = ready;
        (void)loop.unwatch(sv[0]); // on the loop thread: at once, no second call
        seen.release();
    };
    ASSERT_TRUE(loop.watch(sv[0], TF_EVB_READ, on_ready));
    ASSERT_EQ(::write(sv[1], "x", 1), 1);
    ASSERT_TRUE(seen.try_acquire_for(tu::kWatchdog));
    EXPECT_NE(got & TF_EVB_READ, 0u);
    ASSERT_EQ(::write(sv[1], "y", 1), 1);
    ASSERT_TRUE(loop.dispatch_and_wait([] {}));
    EXPECT_FALSE(seen.try_acquire()); // unwatched: no call for the second byte
    auto bad = loop.watch(-1, TF_EVB_READ, on_ready);
    EXPECT_EQ(bad.code(), TF_ERR_INVALID_ARGUMENT);
    loop.stop();
    ::close(sv[0]);
    ::close(sv[1]);
}

TEST_F(Fd, SyncEchoWithTimeoutsAndByteSpans)
{
    auto srv = tf::SyncServer::listen("127.0.0.1:0");
    ASSERT_TRUE(srv) << srv.error().what();
    std::thread echo([&] {
        auto c = srv->accept();
        if (!c)
            return;
        for (;;) {
            auto m = c->recv_alloc();
            if (!m || !c->send(m->span()))
                return;
        }
    });
    auto c = tf::SyncConn::connect("127.0.0.1:" + std::to_string(srv->port()));
    ASSERT_TRUE(c) << c.error().what();
    uint8_t buf[16];
    auto t = c->recv(std::span<uint8_t>(buf), 20ms); // nothing sent yet
    ASSERT_FALSE(t);
    EXPECT_EQ(t.code(), TF_ERR_TIMEOUT);
    EXPECT_EQ(c->error().code, TF_OK); // a timeout before any byte does not poison
    const std::byte hello[] = {std::byte{'h'}, std::byte{'i'}};
    ASSERT_TRUE(c->send(std::span<const std::byte>(hello), 5s));
    auto back = c->recv_vector(5s);
    ASSERT_TRUE(back) << back.error().what();
    EXPECT_EQ(*back, (std::vector<uint8_t>{'h', 'i'}));
    ASSERT_TRUE(c->send(bytes("0123456789abcdefX")));
    auto small = c->recv(std::span<uint8_t>(buf)); // 17 bytes into 16
    ASSERT_FALSE(small);
    EXPECT_EQ(small.code(), TF_ERR_BUFFER_TOO_SMALL);
    *c = tf::SyncConn();
    echo.join();
}

class Sync : public tu::FdCheck
{
};

TEST_F(Sync, RejectCallbackSeesAWrongMagicClient)
{
    auto srv = tf::SyncServer::listen("127.0.0.1:0");
    ASSERT_TRUE(srv);
    std::atomic<int> rejected{0};
    tf_err why = TF_OK;
    srv->on_reject([&](std::string_view peer, const tf::Error &e) {
        EXPECT_FALSE(peer.empty());
        why = e.code;
        rejected++;
    });
    std::thread t([&] {
        auto c = srv->accept();
        EXPECT_FALSE(c);
        EXPECT_EQ(c.error().code, TF_ERR_SHUTDOWN);
    });
    int raw = tu::rawConnect(AF_INET, "127.0.0.1", srv->port());
    ASSERT_GE(raw, 0);
    ASSERT_TRUE(tu::writeAll(raw, "GET ", 4));
    char c;
    while (::recv(raw, &c, 1, 0) > 0) { // the magic, then the server hangs up
    }
    ::close(raw);
    EXPECT_TRUE(srv->shutdown());
    t.join(); // the accepting thread counted and reported the client before it saw the shutdown
    EXPECT_EQ(srv->rejected(), 1u);
    EXPECT_EQ(rejected.load(), 1);
    EXPECT_EQ(why, TF_ERR_BAD_MAGIC);
}

TEST_F(Pair, FuturesSendOwnedAndBorrowedRecvInBothStyles)
{
    make();
    std::vector<uint8_t> v = {1, 2, 3};
    auto f1 = conn.send(std::move(v)); // moved in
    auto up = std::make_unique<uint8_t[]>(2);
    up[0] = 4;
    up[1] = 5;
    auto f2 = conn.send(std::move(up), 2); // owned, delete[] when done
    const std::string s = "six";
    auto f3 = conn.send(bytes(s)); // borrowed
    EXPECT_EQ(await(std::move(f1)).value(), 3u);
    EXPECT_EQ(await(std::move(f2)).value(), 2u);
    EXPECT_EQ(await(std::move(f3)).value(), 3u);
    for (auto want : {std::vector<uint8_t>{1, 2, 3}, std::vector<uint8_t>{4, 5},
                      std::vector<uint8_t>{'s', 'i', 'x'}}) {
        auto got = peer.recv_vector(5s);
        ASSERT_TRUE(got);
        EXPECT_EQ(*got, want);
    }
    ASSERT_TRUE(peer.send(bytes("alloc")));
    auto b = await(conn.recv());
    ASSERT_TRUE(b);
    EXPECT_EQ(std::string(b->data(), b->data() + b->size()), "alloc");
    uint8_t buf[8];
    auto pending = conn.recv(std::span<uint8_t>(buf));
    ASSERT_TRUE(peer.send(bytes("span")));
    EXPECT_EQ(await(std::move(pending)).value(), 4u);
}

TEST_F(Pair, ReceivesQueueInsteadOfRefusingTheSecond)
{
    make();
    auto a = conn.recv();
    auto b = conn.recv(); // uniflow's layer says ResourceExhausted here; this one queues
    ASSERT_TRUE(peer.send(bytes("first")));
    ASSERT_TRUE(peer.send(bytes("second")));
    auto ra = await(std::move(a));
    auto rb = await(std::move(b));
    ASSERT_TRUE(ra && rb);
    EXPECT_EQ(ra->size(), 5u);
    EXPECT_EQ(rb->size(), 6u);
}

TEST_F(Pair, SendsQueueUntilTheBoundThenBusyThenWritable)
{
    tf::Config c;
    c.send_queue_msgs = 2;
    make(c);
    std::vector<uint8_t> big(8u << 20, 0x5A); // outgrows the socketpair: stays queued
    auto f1 = conn.send(std::span<const uint8_t>(big));
    auto f2 = conn.send(bytes("queued")); // the second still fits the bound
    auto f3 = await(conn.send(bytes("refused")));
    ASSERT_FALSE(f3);
    EXPECT_EQ(f3.code(), TF_ERR_BUSY);
    EXPECT_EQ(conn.error().code, TF_OK); // a refusal, not a failure
    std::binary_semaphore writable{0};
    ASSERT_TRUE(conn.on_writable([&] { writable.release(); }));
    auto got = peer.recv_vector(5s);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->size(), big.size());
    EXPECT_TRUE(writable.try_acquire_for(tu::kWatchdog));
    EXPECT_TRUE(await(std::move(f1)));
    EXPECT_TRUE(await(std::move(f2)));
    auto second = peer.recv_vector(5s);
    ASSERT_TRUE(second);
    EXPECT_EQ(second->size(), 6u);
}

TEST_F(Pair, ThenRunsOnTheLoopWithTheResult)
{
    make();
    std::binary_semaphore done{0};
    bool on_loop = false;
    size_t n = 0;
    auto r = conn.recv().then([&](tf::Result<tf::Buffer> b) {
        on_loop = loop.in_loop_thread();
        n = b ? b->size() : 999;
        done.release();
    });
    ASSERT_TRUE(r);
    ASSERT_TRUE(peer.send(bytes("xyz")));
    ASSERT_TRUE(done.try_acquire_for(tu::kWatchdog));
    EXPECT_TRUE(on_loop);
    EXPECT_EQ(n, 3u);
}

TEST_F(Pair, OpCallbacksMakeNoAllocationPerOperation)
{
    make();
    std::binary_semaphore sent{0}, got{0};
    tf_err last = TF_OK;
    size_t lastLen = 0;
    tf::Op sendOp([&](tf::Completion &c) {
        last = c.error.code;
        sent.release();
    });
    tf::Op recvOp([&](tf::Completion &c) {
        lastLen = c.data.size();
        last = c.error.code;
        got.release();
    });
    const uint8_t msg[64] = {7};
    uint8_t rbuf[64];
    uint8_t pbuf[64];
    int fails = 0;
    uint64_t before = g_news.load();
    for (int i = 0; i < 200; i++) {
        fails += conn.send(sendOp, std::span<const uint8_t>(msg)) ? 0 : 1;
        fails += sent.try_acquire_for(tu::kWatchdog) && last == TF_OK ? 0 : 1;
        fails += peer.recv(std::span<uint8_t>(pbuf)) ? 0 : 1;
        fails += conn.recv(recvOp, std::span<uint8_t>(rbuf)) ? 0 : 1;
        fails += peer.send(std::span<const uint8_t>(pbuf, 64)) ? 0 : 1;
        fails += got.try_acquire_for(tu::kWatchdog) && last == TF_OK && lastLen == 64 ? 0 : 1;
    }
    uint64_t after = g_news.load();
    EXPECT_EQ(fails, 0);
    EXPECT_EQ(after - before, 0u) << "C++ allocations on the Op path";
}

TEST_F(Pair, AllocatingOpHandsTheBufferToTheCallback)
{
    make();
    std::binary_semaphore got{0};
    std::vector<uint8_t> kept;
    tf::Op op([&](tf::Completion &c) {
        tf::Buffer b = std::move(c.buffer); // the callback's to keep
        kept = b.to_vector();
        got.release();
    });
    ASSERT_TRUE(conn.recv(op));
    ASSERT_TRUE(peer.send(bytes("mine")));
    ASSERT_TRUE(got.try_acquire_for(tu::kWatchdog));
    EXPECT_EQ(kept, (std::vector<uint8_t>{'m', 'i', 'n', 'e'}));
}

TEST_F(Pair, OversizeSendIsRefusedWithoutPoisonAndOversizeRecvFails)
{
    tf::Config small;
    small.max_send_len = 16;
    small.max_recv_len = 16;
    make(small);
    std::vector<uint8_t> seventeen(17, 1);
    auto r = await(conn.send(std::span<const uint8_t>(seventeen)));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), TF_ERR_TOO_LARGE);
    EXPECT_EQ(conn.error().code, TF_OK); // refused, not poisoned
    std::vector<uint8_t> sixteen(16, 2);
    EXPECT_TRUE(await(conn.send(std::span<const uint8_t>(sixteen))));
    EXPECT_TRUE(peer.recv_vector(5s));
    ASSERT_TRUE(peer.send(std::span<const uint8_t>(seventeen)));
    auto big = await(conn.recv());
    ASSERT_FALSE(big);
    EXPECT_EQ(big.code(), TF_ERR_TOO_LARGE);
    EXPECT_EQ(conn.error().code, TF_ERR_TOO_LARGE); // the stream is out of step: poisoned
}

TEST_F(Pair, StreamEndsWithTheReasonAndTheConnectionMayDieInItsCallback)
{
    make();
    struct Owner {
        std::unique_ptr<tf::AsyncConn> c;
        std::vector<std::string> msgs;
        tf_err end = TF_OK;
        std::binary_semaphore done{0};
    } o;
    o.c = std::make_unique<tf::AsyncConn>(std::move(conn));
    ASSERT_TRUE(o.c->stream([&o](tf::Result<std::span<const uint8_t>> m) {
        if (m) {
            o.msgs.emplace_back(m->begin(), m->end());
            return;
        }
        o.end = m.code();
        o.c.reset(); // destroyed inside its own callback
        o.done.release();
    }));
    ASSERT_TRUE(peer.send(bytes("one")));
    ASSERT_TRUE(peer.send(bytes("")));
    ASSERT_TRUE(peer.send(bytes("three")));
    peer = tf::SyncConn(); // close between messages
    ASSERT_TRUE(o.done.try_acquire_for(tu::kWatchdog));
    EXPECT_EQ(o.msgs, (std::vector<std::string>{"one", "", "three"}));
    EXPECT_EQ(o.end, TF_ERR_CLOSED);
    EXPECT_EQ(o.c, nullptr);
}

TEST_F(Pair, DestroyedInsideAMessageCallbackMidStream)
{
    make();
    auto owned = std::make_unique<tf::AsyncConn>(std::move(conn));
    std::binary_semaphore done{0};
    std::vector<tf_err> calls;
    ASSERT_TRUE(owned->stream([&](tf::Result<std::span<const uint8_t>> m) {
        calls.push_back(m.code());
        if (owned) {
            owned.reset(); // first message: gone; the stream then ends with CANCELLED
            done.release();
        }
    }));
    ASSERT_TRUE(peer.send(bytes("a")));
    (void)peer.send(bytes("b")); // never delivered (the socket may be gone already)
    ASSERT_TRUE(done.try_acquire_for(tu::kWatchdog));
    ASSERT_TRUE(loop.dispatch_and_wait([] {}));
    EXPECT_EQ(calls, (std::vector<tf_err>{TF_OK, TF_ERR_CANCELLED}));
}

TEST_F(Pair, AbortCancelsPendingAndCloseFlushes)
{
    make();
    std::binary_semaphore ended{0};
    tf_err why = TF_OK;
    ASSERT_TRUE(conn.on_end([&](const tf::Error &e) {
        why = e.code;
        ended.release();
    }));
    auto pending = conn.recv();
    ASSERT_TRUE(conn.abort());
    ASSERT_TRUE(ended.try_acquire_for(tu::kWatchdog));
    EXPECT_EQ(why, TF_ERR_CANCELLED);
    auto r = await(std::move(pending));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), TF_ERR_CANCELLED);
    auto later = await(conn.send(bytes("x")));
    EXPECT_FALSE(later);
}

TEST_F(Pair, GracefulCloseDeliversWhatWasQueued)
{
    make();
    auto f = conn.send(bytes("last words"));
    auto closing = conn.close();
    auto got = peer.recv_vector(5s);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->size(), 10u);
    EXPECT_TRUE(await(std::move(f)));
    auto eof = peer.recv_vector(5s);
    ASSERT_FALSE(eof);
    EXPECT_EQ(eof.code(), TF_ERR_CLOSED);
    peer = tf::SyncConn();
    EXPECT_TRUE(await(std::move(closing)));
}

TEST_F(Fd, AsyncServerCallbackEchoAndClientFutures)
{
    auto loop = std::move(tf::Loop::create()).value();
    ASSERT_TRUE(loop.start());
    {
        auto srv = std::move(tf::AsyncServer::create(loop)).value();
        std::vector<std::unique_ptr<tf::AsyncConn>> conns; // loop thread only
        srv.on_accept([&conns](tf::AsyncConn c) {
            auto p = std::make_unique<tf::AsyncConn>(std::move(c));
            tf::AsyncConn *raw = p.get();
            conns.push_back(std::move(p));
            (void)raw->stream([raw](tf::Result<std::span<const uint8_t>> m) {
                if (m)
                    (void)raw->send(std::vector<uint8_t>(m->begin(), m->end()));
            });
        });
        ASSERT_TRUE(srv.listen("[::1]:0"));
        auto cl = std::move(tf::AsyncClient::create(loop)).value();
        auto c = await(cl.connect("[::1]:" + std::to_string(srv.port())));
        ASSERT_TRUE(c) << c.error().what();
        for (std::string m : {"a", "", "echo me"}) {
            ASSERT_TRUE(await(c->send(bytes(m))));
            auto back = await(c->recv());
            ASSERT_TRUE(back) << back.error().what();
            EXPECT_EQ(std::string(back->data(), back->data() + back->size()), m);
        }
        auto refused = await(cl.connect("not an address"));
        ASSERT_FALSE(refused);
        EXPECT_EQ(refused.code(), TF_ERR_BAD_ADDRESS);
        EXPECT_TRUE(srv.shutdown());
        *c = tf::AsyncConn();
        ASSERT_TRUE(loop.dispatch_and_wait([&] { conns.clear(); }));
    }
    loop.stop();
}

class Async : public tu::FdCheck
{
};

TEST_F(Async, AcceptFutureAndShutdown)
{
    auto loop = std::move(tf::Loop::create()).value();
    ASSERT_TRUE(loop.start());
    auto srv = std::move(tf::AsyncServer::create(loop)).value();
    auto early = await(srv.accept());
    ASSERT_FALSE(early);
    EXPECT_EQ(early.code(), TF_ERR_BAD_STATE); // before listen()
    ASSERT_TRUE(srv.listen("127.0.0.1:0"));
    auto pending = srv.accept();
    auto c = tf::SyncConn::connect("127.0.0.1:" + std::to_string(srv.port()));
    ASSERT_TRUE(c);
    auto a = await(std::move(pending));
    ASSERT_TRUE(a);
    auto next = srv.accept();
    ASSERT_TRUE(srv.shutdown());
    auto r = await(std::move(next));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), TF_ERR_SHUTDOWN);
}

// ------------------------------------------------------------------------------ observability

namespace
{
// Events as (event, reason), recorded on the library's threads and read by the test's.
struct EventLog {
    std::mutex mu;
    std::vector<std::pair<tf_conn_event, tf_err>> seen;
    void add(tf_conn_event ev, tf_err e)
    {
        std::lock_guard<std::mutex> g(mu);
        seen.emplace_back(ev, e);
    }
    std::vector<std::pair<tf_conn_event, tf_err>> get()
    {
        std::lock_guard<std::mutex> g(mu);
        return seen;
    }
};

// A client that sends a wrong magic and waits for the server to hang up.
void badMagicClient(uint16_t port)
{
    int raw = tu::rawConnect(AF_INET, "127.0.0.1", port);
    ASSERT_GE(raw, 0);
    ASSERT_TRUE(tu::writeAll(raw, "GET ", 4));
    char c;
    while (::recv(raw, &c, 1, 0) > 0) { // the magic, then the server hangs up
    }
    ::close(raw);
}
} // namespace

TEST(Obs, EventNames)
{
    EXPECT_STREQ(tf::event_name(TF_CONN_CONNECTED), "connected");
    EXPECT_STREQ(tf::event_name(TF_CONN_HANDSHAKE_FAILED), "handshake-failed");
    EXPECT_STREQ(tf::event_name(TF_CONN_CLOSED), "closed");
    EXPECT_STREQ(tf::event_name(static_cast<tf_conn_event>(77)), "?");
}

TEST_F(Pair, StatsCountMessagesInBothModes)
{
    make();
    for (std::string_view m : {"one", "two", "three!"})
        ASSERT_TRUE(await(conn.send(bytes(m))));
    for (int i = 0; i < 3; i++)
        ASSERT_TRUE(peer.recv_vector(tu::kWatchdog));
    ASSERT_TRUE(peer.send(bytes("back")));
    ASSERT_TRUE(await(conn.recv()));

    auto a = conn.stats();
    ASSERT_TRUE(a) << a.error().what();
    EXPECT_EQ(a->size, sizeof(tf_conn_stats));
    EXPECT_EQ(a->err, TF_OK);
    EXPECT_EQ(a->msgs_sent, 3u);
    EXPECT_EQ(a->bytes_sent, 12u);
    EXPECT_EQ(a->msgs_recv, 1u);
    EXPECT_EQ(a->bytes_recv, 4u);
    EXPECT_EQ(a->queued_msgs, 0u);
    auto s = peer.stats();
    ASSERT_TRUE(s) << s.error().what();
    EXPECT_EQ(s->size, sizeof(tf_conn_stats));
    EXPECT_EQ(s->msgs_recv, 3u);
    EXPECT_EQ(s->bytes_recv, 12u);
    EXPECT_EQ(s->msgs_sent, 1u);
    EXPECT_EQ(s->bytes_sent, 4u);
    EXPECT_EQ(s->recv_pending, 0u);

    auto none = tf::SyncConn().stats(); // the C API's refusal comes through
    ASSERT_FALSE(none);
    EXPECT_EQ(none.code(), TF_ERR_INVALID_ARGUMENT);
}

TEST_F(Sync, SendvSendsABatchInOrder)
{
    auto srv = std::move(tf::SyncServer::listen("127.0.0.1:0")).value();
    tf::SyncConn rx;
    std::thread t([&] {
        auto c = srv.accept();
        ASSERT_TRUE(c) << c.error().what();
        rx = std::move(c).value();
    });
    tf::Config cfg;
    cfg.max_send_len = 1000;
    auto tx = tf::SyncConn::connect("127.0.0.1:" + std::to_string(srv.port()), cfg);
    ASSERT_TRUE(tx) << tx.error().what();
    t.join();
    ASSERT_TRUE(rx);

    // 100 messages (more than the wrapper's 64 on the stack), the empty one among them.
    std::vector<std::string> text;
    for (int i = 0; i < 100; i++)
        text.push_back(i == 50 ? std::string() : "message " + std::to_string(i));
    std::vector<std::span<const uint8_t>> batch;
    for (auto &m : text)
        batch.push_back(bytes(m));
    ASSERT_TRUE(tx->sendv(batch, tu::kWatchdog));
    const std::byte b3[3] = {std::byte{1}, std::byte{2}, std::byte{3}};
    std::span<const std::byte> small[2] = {std::span<const std::byte>(b3, 3),
                                           std::span<const std::byte>(b3, 1)};
    ASSERT_TRUE(tx->sendv(std::span<const std::span<const std::byte>>(small), tu::kWatchdog));
    tf_iov iov[1] = {{reinterpret_cast<const uint8_t *>("iov"), 3}};
    ASSERT_TRUE(tx->sendv(std::span<const tf_iov>(iov)));

    for (auto &m : text) {
        auto got = rx.recv_vector(tu::kWatchdog);
        ASSERT_TRUE(got) << got.error().what();
        EXPECT_EQ(std::string(got->begin(), got->end()), m);
    }
    EXPECT_EQ(rx.recv_vector(tu::kWatchdog).value(), (std::vector<uint8_t>{1, 2, 3}));
    EXPECT_EQ(rx.recv_vector(tu::kWatchdog).value(), (std::vector<uint8_t>{1}));
    EXPECT_EQ(rx.recv_vector(tu::kWatchdog).value(), (std::vector<uint8_t>{'i', 'o', 'v'}));
    EXPECT_EQ(tx->stats()->msgs_sent, 103u);
    EXPECT_EQ(rx.stats()->msgs_recv, 103u);

    // One message over max_send_len: nothing of the batch is sent, the connection goes on.
    std::vector<uint8_t> big(1001, 7);
    std::span<const uint8_t> over[2] = {bytes("first"), std::span<const uint8_t>(big)};
    auto r = tx->sendv(std::span<const std::span<const uint8_t>>(over));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), TF_ERR_TOO_LARGE);
    ASSERT_TRUE(tx->send(bytes("after")));
    EXPECT_EQ(rx.recv_vector(tu::kWatchdog).value(),
              (std::vector<uint8_t>{'a', 'f', 't', 'e', 'r'}));
    EXPECT_EQ(tx->stats()->msgs_sent, 104u);
}

TEST_F(Sync, ServerEventsAndStatsForAcceptedAndRejectedClients)
{
    auto srv = std::move(tf::SyncServer::listen("127.0.0.1:0")).value();
    EventLog log;
    std::atomic<uint64_t> closed_recv{~uint64_t{0}};
    ASSERT_TRUE(srv.on_event([&](const tf::SyncEvent &ev) {
        EXPECT_FALSE(ev.peer.empty());
        EXPECT_EQ(ev.conn == nullptr, ev.event == TF_CONN_HANDSHAKE_FAILED);
        if (ev.event == TF_CONN_CLOSED)
            closed_recv = ev.stats()->msgs_recv; // readable in the callback
        log.add(ev.event, ev.error.code);
    }));
    std::atomic<int> phase{0};
    std::thread t([&] {
        auto c = srv.accept();
        ASSERT_TRUE(c) << c.error().what();
        EXPECT_EQ(srv.stats()->active, 1u);
        EXPECT_TRUE(c->recv_vector(tu::kWatchdog));
        *c = tf::SyncConn(); // CLOSED (CANCELLED: freed while open)
        phase = 1;
        auto next = srv.accept(); // the bad-magic client fails here; then the shutdown
        EXPECT_EQ(next.code(), TF_ERR_SHUTDOWN);
    });
    auto c = tf::SyncConn::connect("127.0.0.1:" + std::to_string(srv.port()));
    ASSERT_TRUE(c) << c.error().what();
    ASSERT_TRUE(c->send(bytes("hello")));
    badMagicClient(srv.port());
    EXPECT_TRUE(srv.shutdown());
    t.join();
    EXPECT_EQ(phase.load(), 1);
    using P = std::pair<tf_conn_event, tf_err>;
    EXPECT_EQ(log.get(), (std::vector<P>{{TF_CONN_CONNECTED, TF_OK},
                                         {TF_CONN_CLOSED, TF_ERR_CANCELLED},
                                         {TF_CONN_HANDSHAKE_FAILED, TF_ERR_BAD_MAGIC}}));
    EXPECT_EQ(closed_recv.load(), 1u);
    auto st = srv.stats();
    ASSERT_TRUE(st) << st.error().what();
    EXPECT_EQ(st->size, sizeof(tf_server_stats));
    EXPECT_EQ(st->accepted, 1u);
    EXPECT_EQ(st->rejected, 1u);
    EXPECT_EQ(st->rej_bad_magic, 1u);
    EXPECT_EQ(st->active, 0u);
    EXPECT_EQ(st->handshaking, 0u);
    EXPECT_EQ(st->rej_busy, 0u);
}

TEST_F(Sync, ServerEventCallableReplacedAndCleared)
{
    auto srv = std::move(tf::SyncServer::listen("127.0.0.1:0")).value();
    EventLog first, second;
    ASSERT_TRUE(srv.on_event([&](const tf::SyncEvent &ev) { first.add(ev.event, ev.error.code); }));
    tf::SyncConn held;
    std::thread t([&] {
        for (int i = 0; i < 2; i++) {
            auto c = srv.accept();
            ASSERT_TRUE(c) << c.error().what();
            EXPECT_TRUE(c->recv_vector(tu::kWatchdog)); // the client's word: it has connected
            held = std::move(c).value();
            if (i == 0) { // replaced on the accepting thread, between two events
                ASSERT_TRUE(srv.on_event(
                    [&](const tf::SyncEvent &ev) { second.add(ev.event, ev.error.code); }));
            } else {
                ASSERT_TRUE(srv.on_event(nullptr));
            }
        }
    });
    for (int i = 0; i < 2; i++) {
        auto c = tf::SyncConn::connect("127.0.0.1:" + std::to_string(srv.port()));
        ASSERT_TRUE(c) << c.error().what();
        ASSERT_TRUE(c->send(bytes("hi")));
    }
    t.join();
    held = tf::SyncConn(); // cleared: no CLOSED
    using P = std::pair<tf_conn_event, tf_err>;
    EXPECT_EQ(first.get(), (std::vector<P>{{TF_CONN_CONNECTED, TF_OK}}));
    // the first connection's CLOSED came when the second replaced it in |held|
    EXPECT_EQ(second.get(),
              (std::vector<P>{{TF_CONN_CONNECTED, TF_OK}, {TF_CONN_CLOSED, TF_ERR_CANCELLED}}));
}

TEST_F(Async, EventsInOrderReplacedClearedAndServerStats)
{
    auto loop = std::move(tf::Loop::create()).value();
    ASSERT_TRUE(loop.start());
    {
        auto srv = std::move(tf::AsyncServer::create(loop)).value();
        EventLog s1, s2, cl_log;
        std::binary_semaphore rejected{0}, closed{0};
        ASSERT_TRUE(srv.on_event([&](const tf::AsyncEvent &ev) {
            EXPECT_NE(ev.conn, nullptr);
            s1.add(ev.event, ev.error.code);
        }));
        srv.on_reject([&](std::string_view, const tf::Error &) { rejected.release(); });
        ASSERT_TRUE(srv.listen("127.0.0.1:0"));
        std::string addr = "127.0.0.1:" + std::to_string(srv.port());
        auto cl = std::move(tf::AsyncClient::create(loop)).value();
        ASSERT_TRUE(cl.on_event([&](const tf::AsyncEvent &ev) {
            if (ev.event == TF_CONN_CLOSED) {
                EXPECT_EQ(ev.stats()->msgs_sent, 1u); // readable in the callback
            }
            cl_log.add(ev.event, ev.error.code);
        }));

        auto pending = srv.accept();
        auto c = await(cl.connect(addr));
        ASSERT_TRUE(c) << c.error().what();
        auto a = await(std::move(pending));
        ASSERT_TRUE(a) << a.error().what();
        ASSERT_TRUE(await(c->send(bytes("ping"))));
        ASSERT_TRUE(await(a->recv()));
        EXPECT_EQ(c->stats()->msgs_sent, 1u);
        EXPECT_EQ(a->stats()->msgs_recv, 1u);
        EXPECT_EQ(a->stats()->bytes_recv, 4u);

        badMagicClient(srv.port());
        ASSERT_TRUE(rejected.try_acquire_for(tu::kWatchdog)); // HANDSHAKE_FAILED came before

        ASSERT_TRUE(srv.on_event([&](const tf::AsyncEvent &ev) {
            s2.add(ev.event, ev.error.code);
            if (ev.event == TF_CONN_CLOSED)
                closed.release();
        }));
        *a = tf::AsyncConn(); // freed while healthy: CLOSED (CANCELLED) to the new callable
        ASSERT_TRUE(closed.try_acquire_for(tu::kWatchdog));
        auto end = await(c->recv()); // the peer's close is a half-close: no event
        EXPECT_EQ(end.code(), TF_ERR_CLOSED);
        EXPECT_EQ(cl_log.get().size(), 1u);
        *c = tf::AsyncConn(); // freed while healthy: CLOSED (CANCELLED), inside the free

        ASSERT_TRUE(srv.on_event(nullptr));
        auto pending2 = srv.accept();
        auto c2 = await(cl.connect(addr));
        ASSERT_TRUE(c2) << c2.error().what();
        auto a2 = await(std::move(pending2)); // CONNECTED would have come before: none
        ASSERT_TRUE(a2) << a2.error().what();
        ASSERT_TRUE(cl.on_event(nullptr));

        using P = std::pair<tf_conn_event, tf_err>;
        EXPECT_EQ(s1.get(), (std::vector<P>{{TF_CONN_CONNECTED, TF_OK},
                                            {TF_CONN_HANDSHAKE_FAILED, TF_ERR_BAD_MAGIC}}));
        EXPECT_EQ(s2.get(), (std::vector<P>{{TF_CONN_CLOSED, TF_ERR_CANCELLED}}));
        EXPECT_EQ(cl_log.get(), (std::vector<P>{{TF_CONN_CONNECTED, TF_OK},
                                                {TF_CONN_CLOSED, TF_ERR_CANCELLED},
                                                {TF_CONN_CONNECTED, TF_OK}}));

        auto st = srv.stats();
        ASSERT_TRUE(st) << st.error().what();
        EXPECT_EQ(st->size, sizeof(tf_server_stats));
        EXPECT_EQ(st->accepted, 2u);
        EXPECT_EQ(st->rejected, 1u);
        EXPECT_EQ(st->rej_bad_magic, 1u);
        EXPECT_EQ(st->active, 1u); // a2
        EXPECT_TRUE(srv.shutdown());
        *a2 = tf::AsyncConn();
        *c2 = tf::AsyncConn();
    }
    loop.stop();
}

TEST_F(Sync, SetLogReceivesTheRejectedClientsLine)
{
    struct Lines {
        std::mutex mu;
        std::vector<std::string> got;
    };
    auto lines = std::make_shared<Lines>(); // the callable outlives the test (set_log keeps it)
    auto bad = tf::set_log([](tf_log_level, std::string_view, std::string_view) {},
                           static_cast<tf_log_level>(9));
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.code(), TF_ERR_INVALID_ARGUMENT);
    ASSERT_TRUE(tf::set_log(
        [lines](tf_log_level level, std::string_view sub, std::string_view msg) {
            std::lock_guard<std::mutex> g(lines->mu);
            lines->got.push_back(std::to_string(level) + " " + std::string(sub) + " " +
                                 std::string(msg));
        },
        TF_LOG_WARN));
    auto srv = std::move(tf::SyncServer::listen("127.0.0.1:0")).value();
    std::thread t([&] { EXPECT_EQ(srv.accept().code(), TF_ERR_SHUTDOWN); });
    badMagicClient(srv.port());
    EXPECT_TRUE(srv.shutdown());
    t.join();
    ASSERT_TRUE(tf::clear_log());
    std::lock_guard<std::mutex> g(lines->mu);
    ASSERT_EQ(lines->got.size(), 1u);
    const std::string &l = lines->got[0];
    EXPECT_EQ(l.rfind("2 sync_server ", 0), 0u) << l;
    EXPECT_NE(l.find("127.0.0.1:"), std::string::npos) << l;
}
