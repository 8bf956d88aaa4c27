// tests/cpp/tu_cpp.hpp -- small helpers shared by the GoogleTest suites of the C++ layers:
// an fd-count fixture, raw (non-tcpframe) sockets, and waits with a no-progress watchdog.
#ifndef TU_CPP_HPP
#define TU_CPP_HPP

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <string>

#include <gtest/gtest.h>

namespace tu
{

// A hang becomes a failure after this long (a watchdog, never a verdict on speed).
inline constexpr std::chrono::seconds kWatchdog{30};

inline int openFds()
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == nullptr)
        return -1;
    while (readdir(d) != nullptr)
        n++;
    closedir(d);
    return n;
}

// Every test leaves as many fds open as it found.
class FdCheck : public ::testing::Test
{
  protected:
    void SetUp() override
    {
        fds_ = openFds();
    }
    void TearDown() override
    {
        EXPECT_EQ(openFds(), fds_) << "fd leak";
    }

  private:
    int fds_ = 0;
};

template <typename T> T getOrFail(std::future<T> &f)
{
    if (f.wait_for(kWatchdog) != std::future_status::ready) {
        ADD_FAILURE() << "future not ready after " << kWatchdog.count() << " s (hang)";
        std::abort(); // the test cannot go on with a dangling operation
    }
    return f.get();
}

inline socklen_t fillAddr(int af, const char *host, int port, sockaddr_storage *ss)
{
    *ss = sockaddr_storage{};
    if (af == AF_INET) {
        auto *a = reinterpret_cast<sockaddr_in *>(ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(static_cast<uint16_t>(port));
        inet_pton(AF_INET, host, &a->sin_addr);
        return sizeof(sockaddr_in);
    }
    auto *a = reinterpret_cast<sockaddr_in6 *>(ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET6, host, &a->sin6_addr);
    return sizeof(sockaddr_in6);
}

// A plain TCP client socket connected to host:port (blocking), or -1.
inline int rawConnect(int af, const char *host, int port)
{
    int s = ::socket(af, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    sockaddr_storage ss;
    socklen_t len = fillAddr(af, host, port, &ss);
    if (::connect(s, reinterpret_cast<sockaddr *>(&ss), len) != 0) {
        ::close(s);
        return -1;
    }
    return s;
}

// A bound, listening plain TCP socket on host:0; its port in *port.
inline int rawListen(int af, const char *host, int *port, bool listening = true)
{
    int s = ::socket(af, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    sockaddr_storage ss;
    socklen_t len = fillAddr(af, host, 0, &ss);
    if (::bind(s, reinterpret_cast<sockaddr *>(&ss), len) != 0 ||
        (listening && ::listen(s, 8) != 0)) {
        ::close(s);
        return -1;
    }
    len = sizeof ss;
    getsockname(s, reinterpret_cast<sockaddr *>(&ss), &len);
    *port = af == AF_INET ? ntohs(reinterpret_cast<sockaddr_in *>(&ss)->sin_port)
                          : ntohs(reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port);
    return s;
}

inline bool writeAll(int fd, const void *p, size_t n)
{
    auto *b = static_cast<const char *>(p);
    while (n > 0) {
        ssize_t w = ::send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        b += w;
        n -= static_cast<size_t>(w);
    }
    return true;
}

inline bool readAll(int fd, void *p, size_t n)
{
    auto *b = static_cast<char *>(p);
    while (n > 0) {
        ssize_t r = ::recv(fd, b, n, 0);
        if (r <= 0)
            return false;
        b += r;
        n -= static_cast<size_t>(r);
    }
    return true;
}

inline const unsigned char kMagic[4] = {'U', 'N', 'I', 'F'};

inline int intOpt(int fd, int level, int name)
{
    int v = -1;
    socklen_t l = sizeof v;
    if (getsockopt(fd, level, name, &v, &l) != 0)
        return -1;
    return v;
}

} // namespace tu

#endif
