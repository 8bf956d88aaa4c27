// examples/echo_cxx.cpp -- an echo server and its clients with the C++20 layer (tcpframe.hpp).
//
//   echo_cxx                      self-test: an async echo server on [::1]:0 (or 127.0.0.1:0),
//                                 a blocking client and an async client against it; exit 0 if
//                                 every message came back
//   echo_cxx serve ADDR           an async echo server on ADDR until killed
//   echo_cxx ADDR MSG...          a blocking client: send each MSG, print the echo
//
// Build: c++ -std=c++20 echo_cxx.cpp $(pkg-config --cflags --libs tcpframe)
#include <tcpframe/tcpframe.hpp>

#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tf = tcpframe;

namespace
{

std::span<const uint8_t> view(std::string_view s)
{
    return {reinterpret_cast<const uint8_t *>(s.data()), s.size()};
}

// Connections live in this list, on the loop thread only; each echoes in message-stream mode
// and removes itself from the list (destroying itself inside its own callback) when it ends.
struct EchoServer {
    tf::AsyncServer server;
    std::vector<std::unique_ptr<tf::AsyncConn>> conns;

    void adopt(tf::AsyncConn c)
    {
        conns.push_back(std::make_unique<tf::AsyncConn>(std::move(c)));
        tf::AsyncConn *conn = conns.back().get();
        auto r = conn->stream([this, conn](tf::Result<std::span<const uint8_t>> msg) {
            if (msg) {
                // The view is valid during this call only: the copy is moved into the send.
                (void)conn->send(std::vector<uint8_t>(msg->begin(), msg->end()));
                return;
            }
            drop(conn);
        });
        if (!r)
            drop(conn);
    }
    void drop(tf::AsyncConn *conn)
    {
        std::unique_ptr<tf::AsyncConn> dead; // destroyed last, once the list is consistent
        for (auto &p : conns) {
            if (p.get() == conn) {
                dead = std::move(p);
                std::swap(p, conns.back());
                conns.pop_back();
                return;
            }
        }
    }
};

int fail(const std::string &what, const tf::Error &e)
{
    std::fprintf(stderr, "echo_cxx: %s: %s\n", what.c_str(), e.what().c_str());
    return 1;
}

std::unique_ptr<EchoServer> start_server(tf::Loop &loop, const std::string &addr, tf::Error *err)
{
    auto srv = tf::AsyncServer::create(loop);
    if (!srv) {
        *err = srv.error();
        return nullptr;
    }
    auto es = std::make_unique<EchoServer>();
    es->server = std::move(srv).value();
    EchoServer *p = es.get();
    es->server.on_accept([p](tf::AsyncConn c) { p->adopt(std::move(c)); });
    auto r = es->server.listen(addr);
    if (!r) {
        *err = r.error();
        return nullptr;
    }
    return es;
}

int self_test()
{
    auto loop = tf::Loop::create();
    if (!loop || !loop->start())
        return fail("loop", loop ? tf::Error(TF_ERR_BAD_STATE) : loop.error());
    tf::Error err;
    auto srv = start_server(*loop, "[::1]:0", &err);
    if (!srv)
        srv = start_server(*loop, "127.0.0.1:0", &err); // no IPv6 here
    if (!srv)
        return fail("listen", err);
    std::string addr = srv->server.addr().value_or(std::string("?"));
    std::printf("echo server on %s\n", addr.c_str());

    int bad = 0;
    // A blocking client.
    auto sc = tf::SyncConn::connect(addr);
    if (!sc)
        return fail("connect " + addr, sc.error());
    for (std::string_view m : {"hello", "", "framed world"}) {
        if (auto r = sc->send(view(m), std::chrono::seconds(5)); !r)
            return fail("send", r.error());
        auto back = sc->recv_vector(std::chrono::seconds(5));
        if (!back)
            return fail("receive", back.error());
        bad += std::string_view(reinterpret_cast<const char *>(back->data()), back->size()) != m;
    }
    // An async client: futures from this thread.
    auto ac = tf::AsyncClient::create(*loop);
    if (!ac)
        return fail("client", ac.error());
    auto conn = ac->connect(addr).get();
    if (!conn)
        return fail("async connect " + addr, conn.error());
    static const std::string_view async_msgs[] = {"one", "two", "three"};
    std::vector<tf::Future<size_t>> sends;
    for (auto m : async_msgs)
        sends.push_back(conn->send(view(m))); // queued in order, sent together
    for (auto m : async_msgs) {
        auto back = conn->recv().get();
        if (!back)
            return fail("async receive", back.error());
        bad += std::string_view(reinterpret_cast<const char *>(back->data()), back->size()) != m;
    }
    for (auto &f : sends)
        bad += !f.get();
    std::printf("%s\n", bad == 0 ? "all echoes came back" : "echo mismatch");

    *conn = tf::AsyncConn();
    *sc = tf::SyncConn();
    (void)srv->server.shutdown();
    (void)loop->dispatch_and_wait([&] { srv->conns.clear(); });
    srv.reset();
    loop->stop();
    return bad == 0 ? 0 : 1;
}

int serve(const std::string &addr)
{
    auto loop = tf::Loop::create();
    if (!loop)
        return fail("loop", loop.error());
    tf::Error err;
    auto srv = start_server(*loop, addr, &err);
    if (!srv)
        return fail("listen " + addr, err);
    std::printf("listening on %s\n", srv->server.addr().value_or(std::string("?")).c_str());
    std::fflush(stdout);
    (void)loop->run(); // until killed
    return 0;
}

int client(const std::string &addr, int argc, char **argv)
{
    auto c = tf::SyncConn::connect(addr);
    if (!c)
        return fail("connect " + addr, c.error());
    for (int i = 0; i < argc; i++) {
        if (auto r = c->send(view(argv[i])); !r)
            return fail("send", r.error());
        auto back = c->recv_vector();
        if (!back)
            return fail("receive", back.error());
        std::printf("%.*s\n", static_cast<int>(back->size()),
                    reinterpret_cast<const char *>(back->data()));
    }
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    if (argc == 1)
        return self_test();
    if (argc == 3 && std::string_view(argv[1]) == "serve")
        return serve(argv[2]);
    if (argc >= 2 && argv[1][0] != '-')
        return client(argv[1], argc - 2, argv + 2);
    std::fprintf(stderr, "usage: echo_cxx | echo_cxx serve ADDR | echo_cxx ADDR MSG...\n");
    return 2;
}
