// tests/cpp/test_uniflow_async.cpp -- tcpframe/uniflow.hpp, event-loop half: TcpConn<AsyncIO>,
// AsyncTcpServer, AsyncTcpClient, EventBase, ScopedEventBaseThread. Scenario map:
// tests/cpp/SCENARIOS.md.
#include <tcpframe/uniflow.hpp>

#include <sys/socket.h>

#include <atomic>
#include <thread>
#include <vector>

#include "tu_cpp.hpp"

namespace uniflow = tcpframe::uniflow;
using namespace uniflow; // as uniflow's own tests do
using namespace uniflow::controller;

namespace
{

template <typename T> T now(std::future<T> f)
{
    return tu::getOrFail(f);
}

std::vector<uint8_t> pattern(size_t n)
{
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; i++)
        v[i] = static_cast<uint8_t>(i ^ (i >> 9));
    return v;
}

// ------------------------------------------------------------------------------ async send/recv

// An async connection on the loop and a blocking one, over a socketpair; both ends exchange
// the magic at the same time (the blocking side on a helper thread).
class AsyncPair : public tu::FdCheck
{
  protected:
    void SetUp() override
    {
        tu::FdCheck::SetUp();
        loop_ = std::make_unique<ScopedEventBaseThread>("uf-pair");
        int sv[2];
        ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        std::thread t([&] { sync_ = TcpConn<SyncIO>::create(sv[1]); });
        async_ = TcpConn<AsyncIO>::create(sv[0], *loop_->getEventBase());
        t.join();
        ASSERT_NE(async_, nullptr);
        ASSERT_NE(sync_, nullptr);
    }
    void TearDown() override
    {
        async_.reset();
        sync_.reset();
        loop_.reset();
        tu::FdCheck::TearDown();
    }
    void barrier()
    {
        loop_->getEventBase()->dispatchAndWait([]() noexcept {});
    }

    std::unique_ptr<ScopedEventBaseThread> loop_;
    std::unique_ptr<TcpConn<AsyncIO>> async_;
    std::unique_ptr<TcpConn<SyncIO>> sync_;
};

TEST_F(AsyncPair, SpanSendArrivesAtTheBlockingSide)
{
    const std::vector<uint8_t> msg = {'P', 'I', 'N', 'G'};
    auto sent = async_->send(std::span<const uint8_t>(msg));
    std::vector<uint8_t> got;
    auto r = now(sync_->recv(got));
    ASSERT_TRUE(r.hasValue()) << r.error().toString();
    EXPECT_EQ(got, msg);
    auto s = now(std::move(sent));
    ASSERT_TRUE(s.hasValue());
    EXPECT_EQ(s.value(), 4u);
}

TEST_F(AsyncPair, VectorSendConvertsToASpan)
{
    std::vector<uint8_t> msg = {'V', 'E', 'C'};
    auto sent = async_->send(msg);
    std::vector<uint8_t> got;
    ASSERT_TRUE(now(sync_->recv(got)).hasValue());
    EXPECT_EQ(got, msg);
    EXPECT_EQ(now(std::move(sent)).value(), 3u);
}

TEST_F(AsyncPair, AllocatingRecvGetsABlockingSend)
{
    std::vector<uint8_t> got;
    auto pending = async_->recv(got);
    const std::vector<uint8_t> msg = {'P', 'O', 'N', 'G'};
    ASSERT_TRUE(now(sync_->send(msg)).hasValue());
    auto r = now(std::move(pending));
    ASSERT_TRUE(r.hasValue()) << r.error().toString();
    EXPECT_EQ(r.value(), 4u);
    EXPECT_EQ(got, msg);
}

TEST_F(AsyncPair, SpanRecvGetsABlockingSend)
{
    std::vector<uint8_t> buf(64, 0xEE);
    auto pending = async_->recv(std::span<uint8_t>(buf));
    const std::vector<uint8_t> msg = {1, 2, 3, 4, 5};
    ASSERT_TRUE(now(sync_->send(msg)).hasValue());
    auto r = now(std::move(pending));
    ASSERT_TRUE(r.hasValue()) << r.error().toString();
    ASSERT_EQ(r.value(), msg.size());
    EXPECT_TRUE(std::equal(msg.begin(), msg.end(), buf.begin()));
    EXPECT_EQ(buf[5], 0xEE); // nothing past the message written
}

TEST_F(AsyncPair, SpanSendThenAllocatingRecvOnOneConnection)
{
    const std::vector<uint8_t> hello = {'H', 'E', 'L', 'L', 'O'};
    auto sent = async_->send(std::span<const uint8_t>(hello));
    std::vector<uint8_t> got;
    ASSERT_TRUE(now(sync_->recv(got)).hasValue());
    EXPECT_EQ(got, hello);
    ASSERT_TRUE(now(std::move(sent)).hasValue());
    const std::vector<uint8_t> world = {'W', 'O', 'R', 'L', 'D'};
    std::vector<uint8_t> back;
    auto pending = async_->recv(back);
    ASSERT_TRUE(now(sync_->send(world)).hasValue());
    ASSERT_TRUE(now(std::move(pending)).hasValue());
    EXPECT_EQ(back, world);
}

TEST_F(AsyncPair, OneMiBSpanSend)
{
    auto big = pattern(1u << 20);
    auto sent = async_->send(std::span<const uint8_t>(big));
    std::vector<uint8_t> got;
    auto r = now(sync_->recv(got));
    ASSERT_TRUE(r.hasValue()) << r.error().toString();
    EXPECT_EQ(got, big);
    EXPECT_EQ(now(std::move(sent)).value(), big.size());
}

TEST_F(AsyncPair, OneMiBSpanRecv)
{
    auto big = pattern(1u << 20);
    std::vector<uint8_t> buf(big.size());
    auto pending = async_->recv(std::span<uint8_t>(buf));
    ASSERT_TRUE(now(sync_->send(big)).hasValue());
    auto r = now(std::move(pending));
    ASSERT_TRUE(r.hasValue()) << r.error().toString();
    EXPECT_EQ(r.value(), big.size());
    EXPECT_EQ(buf, big);
}

TEST_F(AsyncPair, EmptySpanSend)
{
    auto sent = async_->send(std::span<const uint8_t>());
    std::vector<uint8_t> got = {9};
    auto r = now(sync_->recv(got));
    ASSERT_TRUE(r.hasValue());
    EXPECT_TRUE(got.empty());
    EXPECT_EQ(now(std::move(sent)).value(), 0u);
}

TEST_F(AsyncPair, EmptyMessageIntoAnAllocatingRecv)
{
    std::vector<uint8_t> got = {9, 9};
    auto pending = async_->recv(got);
    ASSERT_TRUE(now(sync_->send(std::vector<uint8_t>{})).hasValue());
    auto r = now(std::move(pending));
    ASSERT_TRUE(r.hasValue());
    EXPECT_EQ(r.value(), 0u);
    EXPECT_TRUE(got.empty());
}

TEST_F(AsyncPair, SpanRecvTooSmallFails)
{
    std::vector<uint8_t> buf(4);
    auto pending = async_->recv(std::span<uint8_t>(buf));
    ASSERT_TRUE(now(sync_->send(std::vector<uint8_t>(10, 0xAA))).hasValue());
    auto r = now(std::move(pending));
    ASSERT_TRUE(r.hasError());
    EXPECT_EQ(r.error().code(), ErrCode::InvalidArgument) << r.error().toString();
}

TEST_F(AsyncPair, SendAndRecvInFlightTogether)
{
    const std::vector<uint8_t> out = {'S', 'E', 'N', 'D'};
    auto sent = async_->send(std::span<const uint8_t>(out));
    std::vector<uint8_t> in;
    auto pending = async_->recv(in);
    std::vector<uint8_t> got;
    ASSERT_TRUE(now(sync_->recv(got)).hasValue());
    EXPECT_EQ(got, out);
    const std::vector<uint8_t> reply = {'R', 'E', 'C', 'V'};
    ASSERT_TRUE(now(sync_->send(reply)).hasValue());
    EXPECT_EQ(now(std::move(sent)).value(), 4u);
    ASSERT_TRUE(now(std::move(pending)).hasValue());
    EXPECT_EQ(in, reply);
}

TEST_F(AsyncPair, AllocatingRecvFailsWhenThePeerGoes)
{
    std::vector<uint8_t> got;
    auto pending = async_->recv(got);
    barrier();
    sync_.reset();
    auto r = now(std::move(pending));
    ASSERT_TRUE(r.hasError());
    EXPECT_EQ(r.error().code(), ErrCode::ConnectionFailed);
}

TEST_F(AsyncPair, SpanRecvFailsWhenThePeerGoes)
{
    std::vector<uint8_t> buf(64);
    auto pending = async_->recv(std::span<uint8_t>(buf));
    sync_.reset(); // no barrier needed: the close is seen whenever the recv starts
    auto r = now(std::move(pending));
    ASSERT_TRUE(r.hasError());
    EXPECT_EQ(r.error().code(), ErrCode::ConnectionFailed);
}

TEST_F(AsyncPair, SecondSendInFlightIsResourceExhausted)
{
    auto big = pattern(8u << 20); // outgrows the socketpair's 1 MiB buffers: stays in flight
    auto first = async_->send(std::span<const uint8_t>(big));
    const std::vector<uint8_t> small = {'X'};
    auto second = now(async_->send(std::span<const uint8_t>(small)));
    ASSERT_TRUE(second.hasError());
    EXPECT_EQ(second.error().code(), ErrCode::ResourceExhausted);
    std::vector<uint8_t> got;
    ASSERT_TRUE(now(sync_->recv(got)).hasValue());
    EXPECT_EQ(got, big);
    EXPECT_TRUE(now(std::move(first)).hasValue());
    // Once the first is done, the next send is accepted again.
    auto third = async_->send(std::span<const uint8_t>(small));
    ASSERT_TRUE(now(sync_->recv(got)).hasValue());
    EXPECT_EQ(got, small);
    EXPECT_TRUE(now(std::move(third)).hasValue());
}

TEST_F(AsyncPair, SecondRecvInFlightIsResourceExhausted)
{
    std::vector<uint8_t> a, b;
    auto first = async_->recv(a);
    auto second = now(async_->recv(b));
    ASSERT_TRUE(second.hasError());
    EXPECT_EQ(second.error().code(), ErrCode::ResourceExhausted);
    ASSERT_TRUE(now(sync_->send(std::vector<uint8_t>{'Y'})).hasValue());
    ASSERT_TRUE(now(std::move(first)).hasValue());
    EXPECT_EQ(a, std::vector<uint8_t>{'Y'});
}

TEST_F(AsyncPair, SendToAGonePeerFails)
{
    sync_.reset();
    auto big = pattern(1u << 20);
    auto r = now(async_->send(std::span<const uint8_t>(big)));
    ASSERT_TRUE(r.hasError());
    EXPECT_EQ(r.error().code(), ErrCode::ConnectionFailed);
}

TEST_F(AsyncPair, DestroyedWithASendInFlight)
{
    auto big = pattern(8u << 20);
    auto sent = async_->send(std::span<const uint8_t>(big));
    barrier();
    async_.reset();
    auto r = now(std::move(sent)); // resolves (either way), never hangs
    if (r.hasError()) {
        EXPECT_EQ(r.error().code(), ErrCode::Aborted);
    }
}

TEST_F(AsyncPair, DestroyedWithARecvInFlight)
{
    std::vector<uint8_t> got;
    auto pending = async_->recv(got);
    barrier();
    async_.reset();
    auto r = now(std::move(pending));
    ASSERT_TRUE(r.hasError());
    EXPECT_EQ(r.error().code(), ErrCode::Aborted);
}

// --- beyond uniflow's suite

TEST_F(AsyncPair, DestroyedOnTheLoopThreadWithARecvInFlight)
{
    std::vector<uint8_t> got;
    auto pending = async_->recv(got);
    auto *conn = async_.release();
    loop_->getEventBase()->dispatch([conn]() noexcept { delete conn; });
    auto r = now(std::move(pending));
    ASSERT_TRUE(r.hasError());
    EXPECT_EQ(r.error().code(), ErrCode::Aborted);
}

TEST_F(AsyncPair, HugeLengthPrefixFailsWithoutAllocating)
{
    int fd = sync_->getFd();
    unsigned char hdr[4] = {0xFF, 0xFF, 0xFF, 0xFF};
    ASSERT_TRUE(tu::writeAll(fd, hdr, 4));
    std::vector<uint8_t> got;
    auto r = now(async_->recv(got));
    ASSERT_TRUE(r.hasError());
    EXPECT_EQ(r.error().code(), ErrCode::InvalidArgument) << r.error().toString();
    EXPECT_TRUE(got.empty());
}

TEST_F(AsyncPair, CloseInterruptsARecvAndLaterCallsFail)
{
    std::vector<uint8_t> got;
    auto pending = async_->recv(got);
    async_->close();
    EXPECT_TRUE(now(std::move(pending)).hasError());
    auto again = now(async_->send(std::vector<uint8_t>{1}));
    ASSERT_TRUE(again.hasError());
    EXPECT_EQ(again.error().code(), ErrCode::NotConnected);
}

TEST_F(AsyncPair, OperationsAfterTheLoopStoppedFailInsteadOfHanging)
{
    std::vector<uint8_t> got;
    auto pending = async_->recv(got);
    loop_.reset(); // the EventBase thread goes first; the connection is destroyed later
    EXPECT_TRUE(now(std::move(pending)).hasError());
    EXPECT_TRUE(now(async_->send(std::vector<uint8_t>{1})).hasError());
}

class AsyncCreate : public tu::FdCheck
{
};

TEST_F(AsyncCreate, WrongMagicOnASocketpairGivesNull)
{
    ScopedEventBaseThread loop("uf-create");
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    std::thread peer([&] {
        uint32_t junk = 0xDEADBEEF;
        tu::writeAll(sv[1], &junk, 4);
    });
    auto c = TcpConn<AsyncIO>::create(sv[0], *loop.getEventBase());
    peer.join();
    EXPECT_EQ(c, nullptr);
    ::close(sv[1]);
}

// ------------------------------------------------------------------------------ async accept

struct Family {
    const char *bind;
    const char *host;
    int af;
};
void PrintTo(const Family &f, std::ostream *os)
{
    *os << f.bind;
}

class AsyncLoopback : public tu::FdCheck, public ::testing::WithParamInterface<Family>
{
  protected:
    std::string id(int port) const
    {
        return std::string(GetParam().host) + ":" + std::to_string(port);
    }
    std::unique_ptr<Conn> connect(int port)
    {
        TcpClient c;
        return now(c.connect(id(port)));
    }
};

#define INIT_OR_SKIP(server)                                                                       \
    do {                                                                                           \
        Status st_ = (server).init();                                                              \
        if (!st_)                                                                                  \
            GTEST_SKIP() << "not available: " << st_.error().toString();                           \
    } while (0)

TEST_P(AsyncLoopback, AcceptOne)
{
    ScopedEventBaseThread loop("uf-accept");
    AsyncTcpServer s(GetParam().bind, {}, *loop.getEventBase());
    INIT_OR_SKIP(s);
    auto f = s.accept();
    auto cli = connect(s.getPort());
    ASSERT_NE(cli, nullptr);
    EXPECT_NE(now(std::move(f)), nullptr);
}

TEST_P(AsyncLoopback, ThreeAcceptsPendingBeforeThreeClients)
{
    ScopedEventBaseThread loop("uf-accept");
    AsyncTcpServer s(GetParam().bind, {}, *loop.getEventBase());
    INIT_OR_SKIP(s);
    std::vector<std::future<std::unique_ptr<Conn>>> fs;
    for (int i = 0; i < 3; i++)
        fs.push_back(s.accept());
    std::vector<std::unique_ptr<Conn>> clis;
    for (int i = 0; i < 3; i++) {
        clis.push_back(connect(s.getPort()));
        ASSERT_NE(clis.back(), nullptr) << i;
    }
    for (auto &f : fs)
        EXPECT_NE(now(std::move(f)), nullptr);
}

TEST_P(AsyncLoopback, ClientsBeyondThePendingAcceptsWaitInTheQueue)
{
    ScopedEventBaseThread loop("uf-accept");
    AsyncTcpServer s(GetParam().bind, {}, *loop.getEventBase());
    INIT_OR_SKIP(s);
    auto first = s.accept();
    auto c1 = connect(s.getPort());
    auto c2 = connect(s.getPort());
    auto c3 = connect(s.getPort());
    ASSERT_TRUE(c1 && c2 && c3);
    EXPECT_NE(now(std::move(first)), nullptr);
    loop.getEventBase()->dispatchAndWait([]() noexcept {});
    EXPECT_NE(now(s.accept()), nullptr);
    EXPECT_NE(now(s.accept()), nullptr);
}

TEST_P(AsyncLoopback, PendingAcceptsAreServedInOrder)
{
    ScopedEventBaseThread loop("uf-accept");
    AsyncTcpServer s(GetParam().bind, {}, *loop.getEventBase());
    INIT_OR_SKIP(s);
    auto f1 = s.accept();
    auto f2 = s.accept();
    auto c1 = connect(s.getPort());
    ASSERT_NE(c1, nullptr);
    auto a1 = now(std::move(f1)); // the first client went to the first accept
    ASSERT_NE(a1, nullptr);
    EXPECT_EQ(f2.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
    auto c2 = connect(s.getPort());
    ASSERT_NE(c2, nullptr);
    auto a2 = now(std::move(f2));
    ASSERT_NE(a2, nullptr);
    // And they are the right ends: a message from each client lands on its own accept.
    ASSERT_TRUE(now(c1->send(std::vector<uint8_t>{1})).hasValue());
    ASSERT_TRUE(now(c2->send(std::vector<uint8_t>{2})).hasValue());
    std::vector<uint8_t> g1, g2;
    ASSERT_TRUE(now(a1->recv(g1)).hasValue());
    ASSERT_TRUE(now(a2->recv(g2)).hasValue());
    EXPECT_EQ(g1, std::vector<uint8_t>{1});
    EXPECT_EQ(g2, std::vector<uint8_t>{2});
}

TEST_P(AsyncLoopback, ShutdownGivesNullToEveryPendingAccept)
{
    ScopedEventBaseThread loop("uf-accept");
    AsyncTcpServer s(GetParam().bind, {}, *loop.getEventBase());
    INIT_OR_SKIP(s);
    auto f1 = s.accept();
    auto f2 = s.accept();
    s.shutdown();
    EXPECT_EQ(now(std::move(f1)), nullptr);
    EXPECT_EQ(now(std::move(f2)), nullptr);
    EXPECT_EQ(now(s.accept()), nullptr); // and every later one
}

TEST_P(AsyncLoopback, ShutdownFromAnotherThreadWhileWaiting)
{
    ScopedEventBaseThread loop("uf-accept");
    AsyncTcpServer s(GetParam().bind, {}, *loop.getEventBase());
    INIT_OR_SKIP(s);
    auto f = s.accept();
    std::thread t([&] { s.shutdown(); });
    EXPECT_EQ(now(std::move(f)), nullptr);
    t.join();
}

TEST_P(AsyncLoopback, NonUniflowClientIsDroppedAndTheNextServed)
{
    ScopedEventBaseThread loop("uf-accept");
    AsyncTcpServer s(GetParam().bind, {}, *loop.getEventBase());
    INIT_OR_SKIP(s);
    auto f = s.accept();
    int raw = tu::rawConnect(GetParam().af, GetParam().host, s.getPort());
    ASSERT_GE(raw, 0);
    uint32_t junk = 0xDEADBEEF;
    ASSERT_TRUE(tu::writeAll(raw, &junk, 4));
    ::close(raw);
    auto cli = connect(s.getPort());
    ASSERT_NE(cli, nullptr);
    auto srv = now(std::move(f));
    ASSERT_NE(srv, nullptr);
    // The accepted end is the good client's.
    ASSERT_TRUE(now(cli->send(std::vector<uint8_t>{7})).hasValue());
    std::vector<uint8_t> got;
    ASSERT_TRUE(now(srv->recv(got)).hasValue());
    EXPECT_EQ(got, std::vector<uint8_t>{7});
}

TEST_P(AsyncLoopback, SendRecvBothWaysAfterAsyncAccept)
{
    ScopedEventBaseThread loop("uf-accept");
    AsyncTcpServer s(GetParam().bind, {}, *loop.getEventBase());
    INIT_OR_SKIP(s);
    auto f = s.accept();
    auto cli = connect(s.getPort());
    ASSERT_NE(cli, nullptr);
    auto srv = now(std::move(f));
    ASSERT_NE(srv, nullptr);
    EXPECT_NE(dynamic_cast<TcpConn<SyncIO> *>(srv.get()), nullptr); // as uniflow hands out
    const std::vector<uint8_t> msg = {1, 2, 3, 4}, reply = {5, 6};
    ASSERT_TRUE(now(cli->send(msg)).hasValue());
    std::vector<uint8_t> got;
    ASSERT_TRUE(now(srv->recv(got)).hasValue());
    EXPECT_EQ(got, msg);
    ASSERT_TRUE(now(srv->send(reply)).hasValue());
    ASSERT_TRUE(now(cli->recv(got)).hasValue());
    EXPECT_EQ(got, reply);
}

TEST_P(AsyncLoopback, ShutdownThenEventBaseGoneThenServerGone)
{
    auto loop = std::make_unique<ScopedEventBaseThread>("uf-accept");
    AsyncTcpServer s(GetParam().bind, {}, *loop->getEventBase());
    INIT_OR_SKIP(s);
    auto f = s.accept();
    s.shutdown();
    EXPECT_EQ(now(std::move(f)), nullptr);
    loop.reset(); // the server is destroyed after its EventBase: must be clean
}

TEST_P(AsyncLoopback, EventBaseGoneFirstWithoutShutdown)
{
    auto loop = std::make_unique<ScopedEventBaseThread>("uf-accept");
    AsyncTcpServer s(GetParam().bind, {}, *loop->getEventBase());
    INIT_OR_SKIP(s);
    auto f = s.accept();
    loop.reset();
    EXPECT_EQ(now(std::move(f)), nullptr);
}

TEST_P(AsyncLoopback, SilentClientDoesNotDelayTheNextOne)
{
    ScopedEventBaseThread loop("uf-accept");
    AsyncTcpServer s(GetParam().bind, {}, *loop.getEventBase());
    INIT_OR_SKIP(s);
    auto f = s.accept();
    int silent = tu::rawConnect(GetParam().af, GetParam().host, s.getPort());
    ASSERT_GE(silent, 0);
    auto cli = connect(s.getPort());
    ASSERT_NE(cli, nullptr);
    EXPECT_NE(now(std::move(f)), nullptr);
    // Served while the silent client is still in its handshake: the server sent it the magic
    // and has not hung up on it (its handshake deadline is 5 s away).
    unsigned char m[4];
    ASSERT_TRUE(tu::readAll(silent, m, 4));
    char c;
    EXPECT_EQ(::recv(silent, &c, 1, MSG_DONTWAIT), -1);
    EXPECT_EQ(errno, EAGAIN);
    ::close(silent);
}

INSTANTIATE_TEST_SUITE_P(Loopback, AsyncLoopback,
                         ::testing::Values(Family{"127.0.0.1:0", "127.0.0.1", AF_INET},
                                           Family{":::0", "::1", AF_INET6}),
                         [](const ::testing::TestParamInfo<Family> &i) {
                             return std::string(i.param.af == AF_INET ? "IPv4" : "IPv6");
                         });

class AsyncAccept : public tu::FdCheck
{
};

TEST_F(AsyncAccept, AcceptBeforeInitGivesNull)
{
    ScopedEventBaseThread loop("uf-accept");
    AsyncTcpServer s("127.0.0.1:0", {}, *loop.getEventBase());
    EXPECT_EQ(now(s.accept()), nullptr);
}

// ------------------------------------------------------------------------------ async connect

class AsyncConnectLoopback : public AsyncLoopback
{
};

TEST_P(AsyncConnectLoopback, ConnectOne)
{
    ScopedEventBaseThread loop("uf-connect");
    TcpServer s(GetParam().bind);
    INIT_OR_SKIP(s);
    std::unique_ptr<Conn> srv;
    std::thread t([&] { srv = now(s.accept()); });
    AsyncTcpClient c({}, *loop.getEventBase());
    auto cli = now(c.connect(id(s.getPort())));
    t.join();
    EXPECT_NE(cli, nullptr);
    EXPECT_NE(dynamic_cast<TcpConn<AsyncIO> *>(cli.get()), nullptr);
    EXPECT_NE(srv, nullptr);
}

TEST_P(AsyncConnectLoopback, ThreeConnectsFromOneClient)
{
    ScopedEventBaseThread loop("uf-connect");
    TcpServer s(GetParam().bind);
    INIT_OR_SKIP(s);
    std::vector<std::unique_ptr<Conn>> srv(3);
    std::thread t([&] {
        for (auto &c : srv)
            c = now(s.accept());
    });
    AsyncTcpClient c({}, *loop.getEventBase());
    std::vector<std::unique_ptr<Conn>> clis;
    for (int i = 0; i < 3; i++) {
        clis.push_back(now(c.connect(id(s.getPort()))));
        ASSERT_NE(clis.back(), nullptr) << i;
    }
    t.join();
    for (auto &x : srv)
        EXPECT_NE(x, nullptr);
}

TEST_P(AsyncConnectLoopback, SendRecvBothWaysAfterAsyncConnect)
{
    ScopedEventBaseThread loop("uf-connect");
    TcpServer s(GetParam().bind);
    INIT_OR_SKIP(s);
    std::unique_ptr<Conn> srv;
    std::thread t([&] { srv = now(s.accept()); });
    AsyncTcpClient c({}, *loop.getEventBase());
    auto cli = now(c.connect(id(s.getPort())));
    t.join();
    ASSERT_TRUE(cli && srv);
    const std::vector<uint8_t> msg = {1, 2, 3, 4}, reply = {5, 6};
    ASSERT_TRUE(now(cli->send(msg)).hasValue());
    std::vector<uint8_t> got;
    ASSERT_TRUE(now(srv->recv(got)).hasValue());
    EXPECT_EQ(got, msg);
    ASSERT_TRUE(now(srv->send(reply)).hasValue());
    ASSERT_TRUE(now(cli->recv(got)).hasValue());
    EXPECT_EQ(got, reply);
}

TEST_P(AsyncConnectLoopback, ConnectToAClosedPortGivesNull)
{
    ScopedEventBaseThread loop("uf-connect");
    TcpSocketConfig once;
    once.connectRetries = 0;
    once.retryTimeout = std::chrono::milliseconds(0);
    AsyncTcpClient c(once, *loop.getEventBase());
    int port = 0;
    int reserved = tu::rawListen(GetParam().af, GetParam().host, &port, false);
    if (reserved < 0)
        GTEST_SKIP() << "family not available";
    EXPECT_EQ(now(c.connect(id(port))), nullptr);
    ::close(reserved);
}

INSTANTIATE_TEST_SUITE_P(Loopback, AsyncConnectLoopback,
                         ::testing::Values(Family{"127.0.0.1:0", "127.0.0.1", AF_INET},
                                           Family{":::0", "::1", AF_INET6}),
                         [](const ::testing::TestParamInfo<Family> &i) {
                             return std::string(i.param.af == AF_INET ? "IPv4" : "IPv6");
                         });

class AsyncConnect : public tu::FdCheck
{
};

TEST_F(AsyncConnect, NonUniflowServerGivesNull)
{
    ScopedEventBaseThread loop("uf-connect");
    int port = 0;
    int lsn = tu::rawListen(AF_INET, "127.0.0.1", &port);
    ASSERT_GE(lsn, 0);
    std::thread fake([lsn] {
        int c = ::accept(lsn, nullptr, nullptr);
        if (c < 0)
            return;
        uint32_t junk = 0xDEADBEEF;
        tu::writeAll(c, &junk, 4);
        unsigned char m[4];
        tu::readAll(c, m, 4);
        ::close(c);
    });
    TcpSocketConfig once;
    once.connectRetries = 0;
    once.retryTimeout = std::chrono::milliseconds(0);
    AsyncTcpClient c(once, *loop.getEventBase());
    EXPECT_EQ(now(c.connect("127.0.0.1:" + std::to_string(port))), nullptr);
    fake.join();
    ::close(lsn);
}

TEST_F(AsyncConnect, ClientDestroyedWithAConnectInFlight)
{
    ScopedEventBaseThread loop("uf-connect");
    int port = 0;
    int lsn = tu::rawListen(AF_INET, "127.0.0.1", &port); // accepts, never answers the magic
    ASSERT_GE(lsn, 0);
    std::future<std::unique_ptr<Conn>> f;
    {
        AsyncTcpClient c({}, *loop.getEventBase());
        f = c.connect("127.0.0.1:" + std::to_string(port));
    }
    EXPECT_EQ(now(std::move(f)), nullptr);
    ::close(lsn);
}

// ------------------------------------------------------------------------------ EventBase

class EventBaseTest : public tu::FdCheck
{
};

TEST_F(EventBaseTest, DispatchRunsOnTheLoopThreadInOrder)
{
    ScopedEventBaseThread t("uf-evb");
    EventBase *evb = t.getEventBase();
    EXPECT_FALSE(evb->inLoopThread());
    EXPECT_TRUE(evb->isLoopRunning());
    std::vector<int> seen;
    std::thread::id where;
    for (int i = 0; i < 5; i++)
        evb->dispatch([&seen, i]() noexcept { seen.push_back(i); });
    evb->dispatchAndWait([&]() noexcept { where = std::this_thread::get_id(); });
    EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 4}));
    EXPECT_EQ(where, t.getThreadId());
    bool inline_ran = false;
    evb->dispatchAndWait([&]() noexcept {
        evb->dispatchInline([&]() noexcept { inline_ran = evb->inLoopThread(); });
    });
    EXPECT_TRUE(inline_ran);
}

TEST_F(EventBaseTest, LoopOnAThreadOfOurOwnUntilStop)
{
    EventBase evb;
    std::thread::id loopId;
    std::thread t([&] {
        loopId = std::this_thread::get_id();
        evb.loop();
    });
    bool ran = false;
    std::thread::id seen;
    evb.dispatchAndWait([&]() noexcept { // waits for the loop to start
        ran = evb.inLoopThread();
        seen = std::this_thread::get_id();
    });
    EXPECT_TRUE(ran);
    evb.stop();
    t.join();
    EXPECT_EQ(seen, loopId);
    EXPECT_FALSE(evb.isLoopRunning());
}

TEST_F(EventBaseTest, BlockingCallsOnTheLoopThreadRefuseInsteadOfDeadlocking)
{
    ScopedEventBaseThread loop("uf-evb");
    AsyncTcpServer s("127.0.0.1:0", {}, *loop.getEventBase());
    ASSERT_TRUE(s.init().hasValue());
    auto f = s.accept();
    TcpClient c;
    auto cli = now(c.connect("127.0.0.1:" + std::to_string(s.getPort())));
    auto srv = now(std::move(f));
    ASSERT_TRUE(cli && srv);
    std::optional<ErrCode> code;
    loop.getEventBase()->dispatchAndWait([&]() noexcept {
        std::vector<uint8_t> got;
        auto r = srv->recv(got); // a TcpConn<SyncIO> made by the loop, called on the loop
        if (r.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
            auto v = r.get();
            if (v.hasError())
                code = v.error().code();
        }
    });
    ASSERT_TRUE(code.has_value());
    EXPECT_EQ(*code, ErrCode::InvalidArgument);
    // Off the loop it works.
    ASSERT_TRUE(now(cli->send(std::vector<uint8_t>{3})).hasValue());
    std::vector<uint8_t> got;
    ASSERT_TRUE(now(srv->recv(got)).hasValue());
    EXPECT_EQ(got, std::vector<uint8_t>{3});
}

TEST_F(EventBaseTest, StoppedLoopNeverHangsADispatchAndWait)
{
    auto t = std::make_unique<ScopedEventBaseThread>("uf-evb");
    EventBase *evb = t->getEventBase();
    evb->stop();
    bool ran = false;
    evb->dispatchAndWait([&]() noexcept { ran = true; });
    evb->dispatch([&]() noexcept { ran = true; });
    EXPECT_FALSE(ran);
    EXPECT_FALSE(evb->isLoopRunning());
}

TEST_F(EventBaseTest, RegisterFdReportsReadinessAsEpollBits)
{
    ScopedEventBaseThread t("uf-evb");
    EventBase *evb = t.getEventBase();
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    std::promise<uint32_t> got;
    auto gotF = got.get_future();
    std::atomic<bool> once{false};
    evb->registerFd(sv[0], EPOLLIN, [&](uint32_t ev) {
        if (!once.exchange(true)) {
            char c;
            (void)::read(sv[0], &c, 1);
            got.set_value(ev);
        }
    });
    ASSERT_EQ(::write(sv[1], "x", 1), 1);
    EXPECT_NE(tu::getOrFail(gotF) & EPOLLIN, 0u);
    // A second registration of the same fd replaces the first (which is never called again).
    std::promise<uint32_t> got2;
    auto got2F = got2.get_future();
    std::atomic<bool> once2{false};
    evb->registerFd(sv[0], EPOLLIN, [&](uint32_t ev) {
        if (!once2.exchange(true)) {
            char c;
            (void)::read(sv[0], &c, 1);
            got2.set_value(ev);
        }
    });
    ASSERT_EQ(::write(sv[1], "y", 1), 1);
    EXPECT_NE(tu::getOrFail(got2F) & EPOLLIN, 0u);
    evb->unregisterFd(sv[0]);
    evb->dispatchAndWait([]() noexcept {}); // the unregister has taken effect
    ::close(sv[0]);
    ::close(sv[1]);
}

} // namespace
