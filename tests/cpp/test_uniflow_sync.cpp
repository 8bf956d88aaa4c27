// tests/cpp/test_uniflow_sync.cpp -- tcpframe/uniflow.hpp, blocking half: TcpServer, TcpClient,
// TcpConn<SyncIO>, TcpSocketConfig. Written against uniflow's API as a uniflow user would
// (namespace alias only); scenario map: tests/cpp/SCENARIOS.md.
#include <tcpframe/uniflow.hpp>

#include <netinet/tcp.h>

#include <atomic>
#include <thread>
#include <vector>

#include "tu_cpp.hpp"

namespace uniflow = tcpframe::uniflow;
using namespace uniflow; // as uniflow's own tests do
using namespace uniflow::controller;

namespace
{

struct Family {
    const char *bind; // server id
    const char *host; // client host
    int af;
};

void PrintTo(const Family &f, std::ostream *os)
{
    *os << f.bind;
}

class Loopback : public tu::FdCheck, public ::testing::WithParamInterface<Family>
{
  protected:
    std::string id(int port) const
    {
        return std::string(GetParam().host) + ":" + std::to_string(port);
    }

    // A listening server or a skipped test (the family is not available).
    std::unique_ptr<TcpServer> listening(TcpSocketConfig cfg = {})
    {
        auto s = std::make_unique<TcpServer>(GetParam().bind, cfg);
        Status st = s->init();
        if (!st)
            return nullptr;
        return s;
    }

    // A client connection and the server's end of it.
    std::pair<std::unique_ptr<Conn>, std::unique_ptr<Conn>> pair(TcpServer &s,
                                                                 TcpSocketConfig cfg = {})
    {
        std::unique_ptr<Conn> srv;
        std::thread t([&] {
            auto f = s.accept();
            srv = tu::getOrFail(f);
        });
        TcpClient c(cfg);
        auto f = c.connect(id(s.getPort()));
        auto cli = tu::getOrFail(f);
        t.join();
        return {std::move(cli), std::move(srv)};
    }
};

#define LISTEN_OR_SKIP(var, ...)                                                                   \
    auto var = listening(__VA_ARGS__);                                                             \
    if (!var)                                                                                      \
        GTEST_SKIP() << "address family not available";

std::vector<uint8_t> bytes(std::initializer_list<int> l)
{
    std::vector<uint8_t> v;
    for (int x : l)
        v.push_back(static_cast<uint8_t>(x));
    return v;
}

Result<size_t> sendNow(Conn &c, const std::vector<uint8_t> &m)
{
    auto f = c.send(m);
    return tu::getOrFail(f);
}

Result<size_t> recvNow(Conn &c, std::vector<uint8_t> &out)
{
    auto f = c.recv(out);
    return tu::getOrFail(f);
}

} // namespace

// ------------------------------------------------------------------------------ connection

TEST_P(Loopback, ConnPingPongBothWaysThenEmptyMessage)
{
    LISTEN_OR_SKIP(s);
    auto [cli, srv] = pair(*s);
    ASSERT_TRUE(cli && srv);
    std::vector<uint8_t> got;
    ASSERT_TRUE(sendNow(*cli, bytes({'p', 'i', 'n', 'g'})).hasValue());
    auto r = recvNow(*srv, got);
    ASSERT_TRUE(r.hasValue()) << r.error().toString();
    EXPECT_EQ(got, bytes({'p', 'i', 'n', 'g'}));
    ASSERT_TRUE(sendNow(*srv, bytes({'p', 'o', 'n', 'g'})).hasValue());
    ASSERT_TRUE(recvNow(*cli, got).hasValue());
    EXPECT_EQ(got, bytes({'p', 'o', 'n', 'g'}));
    ASSERT_TRUE(sendNow(*cli, {}).hasValue());
    got = bytes({1});
    auto e = recvNow(*srv, got);
    ASSERT_TRUE(e.hasValue());
    EXPECT_EQ(e.value(), 0u);
    EXPECT_TRUE(got.empty());
}

TEST_P(Loopback, ConnOneMiBMessageArrivesWhole)
{
    LISTEN_OR_SKIP(s);
    auto conns = pair(*s); // (clang 14 cannot capture structured bindings)
    auto &cli = conns.first;
    auto &srv = conns.second;
    ASSERT_TRUE(cli && srv);
    std::vector<uint8_t> big(1u << 20);
    for (size_t i = 0; i < big.size(); i++)
        big[i] = static_cast<uint8_t>(i * 7 + (i >> 11));
    std::vector<uint8_t> got;
    std::thread rx([&] { (void)recvNow(*srv, got); }); // the frame outgrows the socket buffers
    auto r = sendNow(*cli, big);
    rx.join();
    ASSERT_TRUE(r.hasValue()) << r.error().toString();
    EXPECT_EQ(r.value(), big.size());
    EXPECT_EQ(got, big);
}

TEST_P(Loopback, ConnFiveClientsEachWithTheirOwnMessage)
{
    LISTEN_OR_SKIP(s);
    constexpr int n = 5;
    std::vector<std::unique_ptr<Conn>> srv(n), cli(n);
    std::thread t([&] {
        for (auto &c : srv) {
            auto f = s->accept();
            c = tu::getOrFail(f);
        }
    });
    TcpClient client;
    for (auto &c : cli) {
        auto f = client.connect(id(s->getPort()));
        c = tu::getOrFail(f);
    }
    t.join();
    for (int i = 0; i < n; i++) {
        ASSERT_TRUE(cli[i] && srv[i]) << i;
        ASSERT_TRUE(sendNow(*cli[i], bytes({i, 100 + i})).hasValue());
    }
    for (int i = 0; i < n; i++) {
        std::vector<uint8_t> got;
        ASSERT_TRUE(recvNow(*srv[i], got).hasValue());
        EXPECT_EQ(got, bytes({i, 100 + i}));
    }
}

TEST_P(Loopback, ConnRecvFailsOncePeerIsDestroyed)
{
    LISTEN_OR_SKIP(s);
    auto [cli, srv] = pair(*s);
    ASSERT_TRUE(cli && srv);
    cli.reset();
    std::vector<uint8_t> got;
    auto r = recvNow(*srv, got);
    ASSERT_TRUE(r.hasError());
    EXPECT_EQ(r.error().code(), ErrCode::ConnectionFailed);
}

TEST_P(Loopback, ConnSendToDestroyedPeerFailsWithConnectionFailed)
{
    LISTEN_OR_SKIP(s);
    auto [cli, srv] = pair(*s);
    ASSERT_TRUE(cli && srv);
    srv.reset();
    std::vector<uint8_t> chunk(1024, 0xAA);
    std::optional<uniflow::Err> err;
    for (int i = 0; i < 1000 && !err; i++) { // the kernel takes a few before the RST lands
        auto r = sendNow(*cli, chunk);
        if (r.hasError())
            err = r.error();
    }
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->code(), ErrCode::ConnectionFailed);
    // Poisoned for good: the next send fails at once with the same code.
    auto again = sendNow(*cli, chunk);
    ASSERT_TRUE(again.hasError());
    EXPECT_EQ(again.error().code(), ErrCode::ConnectionFailed);
}

TEST_P(Loopback, ConnDestroyedWithAnUnreadMessageDoesNotHang)
{
    LISTEN_OR_SKIP(s);
    auto [cli, srv] = pair(*s);
    ASSERT_TRUE(cli && srv);
    for (int i = 0; i < 3; i++)
        ASSERT_TRUE(sendNow(*cli, bytes({i, 0xAA, 0xBB})).hasValue());
    for (int i = 0; i < 2; i++) {
        std::vector<uint8_t> got;
        ASSERT_TRUE(recvNow(*srv, got).hasValue());
        EXPECT_EQ(got, bytes({i, 0xAA, 0xBB}));
    }
    srv.reset();
    cli.reset();
}

TEST_P(Loopback, ConnTenMessagesKeepTheirOrder)
{
    LISTEN_OR_SKIP(s);
    auto [cli, srv] = pair(*s);
    ASSERT_TRUE(cli && srv);
    for (int i = 0; i < 10; i++)
        ASSERT_TRUE(sendNow(*cli, bytes({i})).hasValue());
    for (int i = 0; i < 10; i++) {
        std::vector<uint8_t> got;
        ASSERT_TRUE(recvNow(*srv, got).hasValue());
        EXPECT_EQ(got, bytes({i}));
    }
}

TEST_P(Loopback, ConnWrongMagicIsNeverAccepted)
{
    LISTEN_OR_SKIP(s);
    std::unique_ptr<Conn> got;
    std::atomic<bool> accepted{false};
    std::thread t([&] {
        auto f = s->accept();
        got = tu::getOrFail(f);
        accepted = true;
    });
    int raw = tu::rawConnect(GetParam().af, GetParam().host, s->getPort());
    ASSERT_GE(raw, 0);
    uint32_t wrong = htonl(0xDEADBEEF);
    ASSERT_TRUE(tu::writeAll(raw, &wrong, 4));
    unsigned char theirs[4];
    ASSERT_TRUE(tu::readAll(raw, theirs, 4)); // the server's magic
    EXPECT_EQ(0, memcmp(theirs, tu::kMagic, 4));
    char c;
    EXPECT_LE(::recv(raw, &c, 1, 0), 0); // then it hangs up on us
    EXPECT_FALSE(accepted.load());
    s->shutdown();
    t.join();
    EXPECT_EQ(got, nullptr);
    ::close(raw);
}

TEST_P(Loopback, ConnPeerClosingBeforeMagicIsNeverAccepted)
{
    LISTEN_OR_SKIP(s);
    std::unique_ptr<Conn> got;
    std::thread t([&] {
        auto f = s->accept();
        got = tu::getOrFail(f);
    });
    int raw = tu::rawConnect(GetParam().af, GetParam().host, s->getPort());
    ASSERT_GE(raw, 0);
    ::close(raw);
    // A good client after it is still served: the bad one did not stop the server.
    TcpClient c;
    auto f = c.connect(id(s->getPort()));
    auto good = tu::getOrFail(f);
    t.join();
    EXPECT_NE(good, nullptr);
    EXPECT_NE(got, nullptr); // accept() skipped the early close and returned the good client
}

// ------------------------------------------------------------------------------ extras: lengths

TEST_P(Loopback, ConnHugeLengthPrefixFailsWithoutAllocating)
{
    for (uint32_t len : {0xFFFFFFFFu, (64u << 20) + 1u}) {
        LISTEN_OR_SKIP(s);
        std::unique_ptr<Conn> srv;
        std::thread t([&] {
            auto f = s->accept();
            srv = tu::getOrFail(f);
        });
        int raw = tu::rawConnect(GetParam().af, GetParam().host, s->getPort());
        ASSERT_GE(raw, 0);
        unsigned char hdr[8];
        memcpy(hdr, tu::kMagic, 4);
        uint32_t be = htonl(len);
        memcpy(hdr + 4, &be, 4);
        ASSERT_TRUE(tu::writeAll(raw, hdr, sizeof hdr));
        unsigned char theirs[4];
        ASSERT_TRUE(tu::readAll(raw, theirs, 4));
        t.join();
        ASSERT_NE(srv, nullptr);
        std::vector<uint8_t> got;
        auto r = recvNow(*srv, got);
        ASSERT_TRUE(r.hasError()) << len;
        EXPECT_EQ(r.error().code(), ErrCode::InvalidArgument) << r.error().toString();
        EXPECT_TRUE(got.empty());
        ::close(raw);
    }
}

TEST_P(Loopback, ConnTricklePeerOneByteAtATime)
{
    LISTEN_OR_SKIP(s);
    std::unique_ptr<Conn> srv;
    std::thread t([&] {
        auto f = s->accept();
        srv = tu::getOrFail(f);
    });
    int raw = tu::rawConnect(GetParam().af, GetParam().host, s->getPort());
    ASSERT_GE(raw, 0);
    int one = 1;
    setsockopt(raw, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::vector<unsigned char> wire(tu::kMagic, tu::kMagic + 4);
    const std::string msg = "trickled";
    uint32_t be = htonl(static_cast<uint32_t>(msg.size()));
    wire.insert(wire.end(), reinterpret_cast<unsigned char *>(&be),
                reinterpret_cast<unsigned char *>(&be) + 4);
    wire.insert(wire.end(), msg.begin(), msg.end());
    std::thread trickle([&] {
        for (unsigned char b : wire)
            tu::writeAll(raw, &b, 1);
    });
    t.join();
    ASSERT_NE(srv, nullptr);
    std::vector<uint8_t> got;
    auto r = recvNow(*srv, got);
    trickle.join();
    ASSERT_TRUE(r.hasValue()) << r.error().toString();
    EXPECT_EQ(std::string(got.begin(), got.end()), msg);
    ::close(raw);
}

TEST_P(Loopback, ConnCloseInterruptsABlockedRecv)
{
    LISTEN_OR_SKIP(s);
    auto conns = pair(*s); // (clang 14 cannot capture structured bindings)
    auto &cli = conns.first;
    auto &srv = conns.second;
    ASSERT_TRUE(cli && srv);
    std::vector<uint8_t> got;
    std::promise<Result<size_t>> done;
    auto doneF = done.get_future();
    std::thread rx([&] {
        auto f = srv->recv(got);
        done.set_value(tu::getOrFail(f));
    });
    srv->close(); // before or during the recv: either way it must fail, not wait for data
    auto r = tu::getOrFail(doneF);
    rx.join();
    EXPECT_TRUE(r.hasError());
    auto again = recvNow(*srv, got);
    EXPECT_TRUE(again.hasError());
}

TEST_P(Loopback, SilentClientDoesNotDelayTheNextOne)
{
    LISTEN_OR_SKIP(s);
    int silent = tu::rawConnect(GetParam().af, GetParam().host, s->getPort());
    ASSERT_GE(silent, 0);
    auto [cli, srv] = pair(*s);
    EXPECT_NE(cli, nullptr);
    EXPECT_NE(srv, nullptr);
    // Served while the silent client is still in its handshake (its deadline is 5 s away):
    // the server sent it the magic and has not hung up on it.
    unsigned char m[4];
    ASSERT_TRUE(tu::readAll(silent, m, 4));
    char c;
    EXPECT_EQ(::recv(silent, &c, 1, MSG_DONTWAIT), -1);
    EXPECT_EQ(errno, EAGAIN);
    ::close(silent);
}

// ------------------------------------------------------------------------------ server/client

TEST_P(Loopback, ServerClientConnectAndAccept)
{
    LISTEN_OR_SKIP(s);
    EXPECT_GT(s->getPort(), 0);
    auto [cli, srv] = pair(*s);
    EXPECT_NE(cli, nullptr);
    EXPECT_NE(srv, nullptr);
}

TEST_P(Loopback, ServerDestroyedWhileClientConnectedLeavesTheConnectionWorking)
{
    LISTEN_OR_SKIP(s);
    auto [cli, srv] = pair(*s);
    ASSERT_TRUE(cli && srv);
    s.reset();
    ASSERT_TRUE(sendNow(*cli, bytes({42})).hasValue());
    std::vector<uint8_t> got;
    ASSERT_TRUE(recvNow(*srv, got).hasValue());
    EXPECT_EQ(got, bytes({42}));
}

TEST_P(Loopback, ServerShutdownReleasesABlockedAccept)
{
    LISTEN_OR_SKIP(s);
    std::unique_ptr<Conn> got;
    bool returned = false;
    std::atomic<bool> started{false};
    std::thread t([&] {
        started = true;
        auto f = s->accept();
        got = tu::getOrFail(f);
        returned = true;
    });
    while (!started.load())
        std::this_thread::yield();
    s->shutdown(); // before or during accept(): nullptr either way, never a hang
    t.join();
    EXPECT_TRUE(returned);
    EXPECT_EQ(got, nullptr);
    auto later = s->accept();
    EXPECT_EQ(tu::getOrFail(later), nullptr);
}

TEST_P(Loopback, ServerSyncAcceptFutureIsReadyOnReturn)
{
    LISTEN_OR_SKIP(s);
    std::unique_ptr<Conn> cli;
    std::thread t([&] {
        TcpClient c;
        auto cf = c.connect(id(s->getPort()));
        cli = tu::getOrFail(cf);
    });
    auto f = s->accept(); // blocks until the client is handshaken ...
    EXPECT_EQ(f.wait_for(std::chrono::seconds(0)), std::future_status::ready); // ... so: ready
    t.join();
    EXPECT_NE(f.get(), nullptr);
    EXPECT_NE(cli, nullptr);
}

INSTANTIATE_TEST_SUITE_P(Loopback, Loopback,
                         ::testing::Values(Family{"127.0.0.1:0", "127.0.0.1", AF_INET},
                                           Family{":::0", "::1", AF_INET6}),
                         [](const ::testing::TestParamInfo<Family> &i) {
                             return std::string(i.param.af == AF_INET ? "IPv4" : "IPv6");
                         });

class ServerClient : public tu::FdCheck
{
};

TEST_F(ServerClient, SecondInitIsInvalidArgument)
{
    for (const char *addr : {"127.0.0.1:0", ":::0"}) {
        TcpServer s(addr);
        Status first = s.init();
        ASSERT_TRUE(first.hasValue()) << addr << ": " << first.error().toString();
        Status second = s.init();
        ASSERT_TRUE(second.hasError()) << addr;
        EXPECT_EQ(second.error().code(), ErrCode::InvalidArgument);
    }
}

TEST_F(ServerClient, MalformedIdsThrowInTheServerAndGiveNullInTheClient)
{
    for (const char *bad :
         {"127.0.0.1:invalid", "127.0.0.1:99999999999999999999", "127.0.0.1:70000",
          "127.0.0.1:", "127.0.0.1", "::1:invalid", ":::", ""}) {
        EXPECT_THROW(TcpServer{bad}, std::invalid_argument) << bad;
    }
    TcpSocketConfig once;
    once.connectRetries = 0;
    once.retryTimeout = std::chrono::milliseconds(0);
    TcpClient c(once);
    for (const char *bad :
         {"127.0.0.1:invalid", "127.0.0.1", "localhost:8080", "::1:invalid", "*:80", ":80"}) {
        auto f = c.connect(bad);
        EXPECT_EQ(tu::getOrFail(f), nullptr) << bad;
    }
}

TEST_F(ServerClient, NonNumericOrImpossibleHostFailsInit)
{
    for (const char *bad : {"999.999.999.999:0", "zzzz::1:0", "localhost:0", "1.2.3:0"}) {
        TcpServer s(bad);
        Status st = s.init();
        ASSERT_TRUE(st.hasError()) << bad;
        EXPECT_EQ(st.error().code(), ErrCode::InvalidArgument) << bad;
    }
}

TEST_F(ServerClient, ConnectToAClosedPortGivesNull)
{
    TcpSocketConfig once;
    once.connectRetries = 0;
    once.retryTimeout = std::chrono::milliseconds(0);
    TcpClient c(once);
    for (int af : {AF_INET, AF_INET6}) {
        const char *host = af == AF_INET ? "127.0.0.1" : "::1";
        int port = 0;
        int reserved = tu::rawListen(af, host, &port, false); // bound, not listening: refused
        ASSERT_GE(reserved, 0);
        auto f = c.connect(std::string(host) + ":" + std::to_string(port));
        EXPECT_EQ(tu::getOrFail(f), nullptr) << host;
        ::close(reserved);
    }
}

TEST_F(ServerClient, AcceptBeforeInitGivesNull)
{
    for (const char *addr : {"127.0.0.1:0", ":::0"}) {
        TcpServer s(addr);
        auto f = s.accept();
        ASSERT_EQ(f.wait_for(std::chrono::seconds(0)), std::future_status::ready);
        EXPECT_EQ(f.get(), nullptr) << addr;
    }
}

TEST_F(ServerClient, WildcardIdsBindAndServeLoopback)
{
    for (const char *addr : {"0.0.0.0:0", "*:0", ":::0"}) {
        TcpServer s(addr);
        Status st = s.init();
        ASSERT_TRUE(st.hasValue()) << addr << ": " << st.error().toString();
        std::unique_ptr<Conn> srv;
        std::thread t([&] {
            auto f = s.accept();
            srv = tu::getOrFail(f);
        });
        TcpClient c;
        auto f = c.connect("127.0.0.1:" + std::to_string(s.getPort()));
        auto cli = tu::getOrFail(f);
        t.join();
        EXPECT_NE(cli, nullptr) << addr;
        EXPECT_NE(srv, nullptr) << addr;
    }
}

TEST_F(ServerClient, EmptyHostIsTheDualStackWildcard)
{
    TcpServer s(":0");
    Status st = s.init();
    ASSERT_TRUE(st.hasValue()) << st.error().toString();
    for (const char *host : {"127.0.0.1", "::1"}) {
        std::unique_ptr<Conn> srv;
        std::thread t([&] {
            auto f = s.accept();
            srv = tu::getOrFail(f);
        });
        TcpClient c;
        auto f = c.connect(std::string(host) + ":" + std::to_string(s.getPort()));
        auto cli = tu::getOrFail(f);
        t.join();
        EXPECT_NE(cli, nullptr) << host;
        EXPECT_NE(srv, nullptr) << host;
    }
}

// ------------------------------------------------------------------------------ socket config

class SocketConfig : public tu::FdCheck
{
};

TEST_F(SocketConfig, DefaultsAreUniflowsProductionValues)
{
    TcpSocketConfig c;
    EXPECT_EQ(c.connTimeout, std::chrono::seconds{30});
    EXPECT_EQ(c.socketBufSize, 1 << 20);
    EXPECT_EQ(c.tcpNoDelay, true);
    EXPECT_EQ(c.enableKeepalive, true);
    EXPECT_EQ(c.keepaliveIdle, std::chrono::seconds{60});
    EXPECT_EQ(c.keepaliveInterval, std::chrono::seconds{5});
    EXPECT_EQ(c.keepaliveCount, 3);
    EXPECT_EQ(c.userTimeout, std::chrono::milliseconds{60000});
    EXPECT_EQ(c.acceptRetryCnt, 5);
    EXPECT_EQ(c.connectRetries, 10u);
    EXPECT_EQ(c.retryTimeout, std::chrono::milliseconds{1000});
    // ... and the same values reach tcpframe's configuration.
    tf_tcp_config t = c.toTcpframe().to_c();
    EXPECT_EQ(t.connect_timeout_ms, 30000);
    EXPECT_EQ(t.sndbuf, 1 << 20);
    EXPECT_EQ(t.rcvbuf, 1 << 20);
    EXPECT_EQ(t.nodelay, 1);
    EXPECT_EQ(t.keepalive, 1);
    EXPECT_EQ(t.keepalive_idle_s, 60);
    EXPECT_EQ(t.keepalive_intvl_s, 5);
    EXPECT_EQ(t.keepalive_cnt, 3);
    EXPECT_EQ(t.user_timeout_ms, 60000);
    EXPECT_EQ(t.accept_retries, 5);
    EXPECT_EQ(t.connect_retries, 10);
    EXPECT_EQ(t.retry_delay_ms, 1000);
}

TEST_F(SocketConfig, OsDefaultsLeaveEveryOptionalFieldUnset)
{
    auto c = TcpSocketConfig::osDefaults();
    EXPECT_FALSE(c.connTimeout.has_value());
    EXPECT_FALSE(c.socketBufSize.has_value());
    EXPECT_FALSE(c.tcpNoDelay.has_value());
    EXPECT_FALSE(c.enableKeepalive.has_value());
    EXPECT_FALSE(c.keepaliveIdle.has_value());
    EXPECT_FALSE(c.keepaliveInterval.has_value());
    EXPECT_FALSE(c.keepaliveCount.has_value());
    EXPECT_FALSE(c.userTimeout.has_value());
    tf_tcp_config t = c.toTcpframe().to_c();
    EXPECT_EQ(t.sndbuf, TF_UNSET);
    EXPECT_EQ(t.nodelay, TF_UNSET);
    EXPECT_EQ(t.keepalive, TF_UNSET);
    EXPECT_EQ(t.user_timeout_ms, TF_UNSET);
}

TEST_F(SocketConfig, ValidateAcceptsTheDefaults)
{
    EXPECT_TRUE(TcpSocketConfig{}.validate().hasValue());
}

TEST_F(SocketConfig, ValidateAcceptsTheOsDefaults)
{
    EXPECT_TRUE(TcpSocketConfig::osDefaults().validate().hasValue());
}

void connectWith(const TcpSocketConfig &cfg, int *cliFd, int *srvFd,
                 std::vector<std::unique_ptr<Conn>> &keep)
{
    TcpServer s("127.0.0.1:0", cfg);
    Status st = s.init();
    ASSERT_TRUE(st.hasValue()) << st.error().toString();
    std::unique_ptr<Conn> srv;
    std::thread t([&] {
        auto f = s.accept();
        srv = tu::getOrFail(f);
    });
    TcpClient c(cfg);
    auto f = c.connect("127.0.0.1:" + std::to_string(s.getPort()));
    auto cli = tu::getOrFail(f);
    t.join();
    ASSERT_NE(cli, nullptr);
    ASSERT_NE(srv, nullptr);
    *cliFd = dynamic_cast<TcpConn<SyncIO> &>(*cli).getFd();
    *srvFd = dynamic_cast<TcpConn<SyncIO> &>(*srv).getFd();
    keep.push_back(std::move(cli));
    keep.push_back(std::move(srv));
}

TEST_F(SocketConfig, OsDefaultsConnectAndLeaveTheKernelsOptions)
{
    int probe = ::socket(AF_INET, SOCK_STREAM, 0);
    int nodelay0 = tu::intOpt(probe, IPPROTO_TCP, TCP_NODELAY);
    int keep0 = tu::intOpt(probe, SOL_SOCKET, SO_KEEPALIVE);
    ::close(probe);
    std::vector<std::unique_ptr<Conn>> keep;
    int c = -1, s = -1;
    connectWith(TcpSocketConfig::osDefaults(), &c, &s, keep);
    ASSERT_GE(s, 0);
    EXPECT_EQ(tu::intOpt(s, IPPROTO_TCP, TCP_NODELAY), nodelay0);
    EXPECT_EQ(tu::intOpt(s, SOL_SOCKET, SO_KEEPALIVE), keep0);
    EXPECT_EQ(tu::intOpt(c, SOL_SOCKET, SO_KEEPALIVE), keep0);
}

TEST_F(SocketConfig, ValidateRejectsANegativeTimeout)
{
    TcpSocketConfig c;
    c.connTimeout = std::chrono::seconds{-1};
    auto st = c.validate();
    ASSERT_TRUE(st.hasError());
    EXPECT_EQ(st.error().code(), ErrCode::InvalidArgument);
}

TEST_F(SocketConfig, ValidateRejectsAZeroOrNegativeBufferSize)
{
    for (int v : {0, -1}) {
        TcpSocketConfig c;
        c.socketBufSize = v;
        auto st = c.validate();
        ASSERT_TRUE(st.hasError()) << v;
        EXPECT_EQ(st.error().code(), ErrCode::InvalidArgument);
    }
}

TEST_F(SocketConfig, ValidateRejectsZeroAcceptRetries)
{
    TcpSocketConfig c;
    c.acceptRetryCnt = 0;
    auto st = c.validate();
    ASSERT_TRUE(st.hasError());
    EXPECT_EQ(st.error().code(), ErrCode::InvalidArgument);
}

TEST_F(SocketConfig, ServerConstructorThrowsForAnInvalidConfig)
{
    TcpSocketConfig c;
    c.connTimeout = std::chrono::seconds{-1};
    EXPECT_THROW(TcpServer("127.0.0.1:0", c), std::invalid_argument);
}

TEST_F(SocketConfig, ClientConstructorThrowsForAnInvalidConfig)
{
    TcpSocketConfig c;
    c.socketBufSize = -1;
    EXPECT_THROW(TcpClient{c}, std::invalid_argument);
    // The message names the field (a clear error, not just a throw).
    try {
        TcpClient bad{c};
    } catch (const std::invalid_argument &e) {
        EXPECT_NE(std::string(e.what()).find("socketBufSize"), std::string::npos) << e.what();
    }
}

TEST_F(SocketConfig, CustomBufferSizeReachesBothSockets)
{
    TcpSocketConfig cfg;
    cfg.connTimeout = std::chrono::seconds{10};
    cfg.socketBufSize = 256 * 1024;
    int probe = ::socket(AF_INET, SOCK_STREAM, 0);
    int want = 256 * 1024;
    setsockopt(probe, SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
    int expect = tu::intOpt(probe, SOL_SOCKET, SO_RCVBUF); // what the kernel makes of it
    ::close(probe);
    std::vector<std::unique_ptr<Conn>> keep;
    int c = -1, s = -1;
    connectWith(cfg, &c, &s, keep);
    EXPECT_EQ(tu::intOpt(c, SOL_SOCKET, SO_RCVBUF), expect);
    EXPECT_EQ(tu::intOpt(s, SOL_SOCKET, SO_RCVBUF), expect);
}

TEST_F(SocketConfig, KeepaliveOffIsValidAndTurnsItOff)
{
    TcpSocketConfig cfg;
    cfg.enableKeepalive = false;
    ASSERT_TRUE(cfg.validate().hasValue());
    std::vector<std::unique_ptr<Conn>> keep;
    int c = -1, s = -1;
    connectWith(cfg, &c, &s, keep);
    EXPECT_EQ(tu::intOpt(c, SOL_SOCKET, SO_KEEPALIVE), 0);
    EXPECT_EQ(tu::intOpt(s, SOL_SOCKET, SO_KEEPALIVE), 0);
}

TEST(UniflowResult, ErrCodesPrintTheirNamesAndResultsConvert)
{
    EXPECT_STREQ(uniflow::errorCodeToString(ErrCode::ResourceExhausted), "ResourceExhausted");
    EXPECT_STREQ(uniflow::errorCodeToString(static_cast<ErrCode>(99)), "Unknown");
    uniflow::Err e(ErrCode::Timeout, "no reply");
    EXPECT_EQ(e.toString(), "Timeout: no reply");
    EXPECT_EQ(uniflow::Err(ErrCode::Aborted).toString(), "Aborted");
    auto derived = []() -> uniflow::Result<std::unique_ptr<Conn>> {
        return std::unique_ptr<TcpConn<SyncIO>>{};
    };
    EXPECT_TRUE(derived().hasValue()); // unique_ptr<Derived> converts into Result<unique_ptr<Base>>
    uniflow::Result<int> bad(ErrCode::NotConnected);
    EXPECT_FALSE(bad);
    EXPECT_EQ(bad.valueOr(7), 7);
    EXPECT_TRUE(uniflow::Ok().hasValue());
    EXPECT_EQ(uniflow::make_ready_future(5).get(), 5);
}
