/* tcpframe/uniflow.hpp -- uniflow's controller API (torchcomms, comms/uniflow/controller) over
 * tcpframe, header-only, in namespace tcpframe::uniflow so that it can live beside the real
 * one. Code written against uniflow's TcpController.h switches with its include lines and
 *
 *     namespace uniflow = tcpframe::uniflow;
 *
 * Same type names, member functions, signatures, defaults and error codes: Result<T> / Status /
 * Err / ErrCode, EventBase / ScopedEventBaseThread, controller::Conn / Server / Client,
 * TcpConn<SyncIO|AsyncIO>, TcpServer / AsyncTcpServer, TcpClient / AsyncTcpClient and
 * TcpSocketConfig. The wire format is the same (tcpframe speaks uniflow's), so either side of
 * a connection may be the real uniflow.
 *
 * Where this layer deliberately differs (tests/cpp/SCENARIOS.md lists them with the tests):
 *   - AsyncTcpServer runs every handshake on the loop without blocking it (a silent client
 *     never delays a good one); the connections it hands out are TcpConn<SyncIO> over a
 *     tcpframe async connection: their calls block the calling thread, never the loop, and
 *     refuse (InvalidArgument) on the loop thread instead of deadlocking. getFd() is -1 there.
 *   - AsyncTcpClient retries with back-off on loop timers (uniflow: one attempt).
 *   - TcpConn::create(fd[, evb]) gives the magic exchange a 5 s deadline (uniflow: none).
 *   - Connect back-off is tcpframe's (exponential from retryTimeout, capped, with jitter), and
 *     the whole connect is bounded by connTimeout.
 *   - EventBase never hangs on a stopped loop: dispatchAndWait() after stop() returns without
 *     running the function, dispatch() after stop() destroys it unrun. A stopped EventBase
 *     cannot loop() again.
 *   - Objects on an EventBase keep its loop's memory alive: destroying a connection or server
 *     after its ScopedEventBaseThread is safe (their operations fail with Aborted).
 *   - recvPhaseStats(): frames and payloadBytes are counted; the whole wait of a receive is
 *     added to interFrameStallNs (the C layer does not report the prefix/payload split).
 */
#ifndef TCPFRAME_UNIFLOW_HPP
#define TCPFRAME_UNIFLOW_HPP

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "tcpframe/fdio.h"
#include "tcpframe/proto.h"
#include "tcpframe/tcpframe.hpp"

namespace tcpframe::uniflow
{

// ===================================================================================== Result

/// The error codes of uniflow's Result.h, in its order.
enum class ErrCode : uint32_t {
    NotImplemented,
    DriverError,
    TopologyDisconnect,
    InvalidArgument,
    NotConnected,
    TransportError,
    ConnectionFailed,
    MemoryRegistrationError,
    Timeout,
    ResourceExhausted,
    Aborted,
};

/// The enumerator's name ("ConnectionFailed"); "Unknown" for other values.
inline const char *errorCodeToString(ErrCode code) noexcept
{
    static constexpr const char *names[] = {
        "NotImplemented",
        "DriverError",
        "TopologyDisconnect",
        "InvalidArgument",
        "NotConnected",
        "TransportError",
        "ConnectionFailed",
        "MemoryRegistrationError",
        "Timeout",
        "ResourceExhausted",
        "Aborted",
    };
    auto i = static_cast<uint32_t>(code);
    return i < sizeof names / sizeof names[0] ? names[i] : "Unknown";
}

/// An error code with an optional message.
class Err
{
  public:
    explicit Err(ErrCode code) noexcept : code_(code) {}
    Err(ErrCode code, std::string message) noexcept : code_(code), message_(std::move(message)) {}

    ErrCode code() const noexcept
    {
        return code_;
    }
    const std::string &message() const noexcept
    {
        return message_;
    }
    /// "Code" or "Code: message".
    std::string toString() const
    {
        std::string s = errorCodeToString(code_);
        if (!message_.empty()) {
            s += ": ";
            s += message_;
        }
        return s;
    }

  private:
    ErrCode code_;
    std::string message_;
};

/// A value of type T or an Err.
template <typename T> class Result
{
  public:
    Result(T value) noexcept(std::is_nothrow_move_constructible_v<T>)
        : data_(std::in_place_index<0>, std::move(value))
    {
    }
    /// From a type T can be built from (unique_ptr<Derived> into Result<unique_ptr<Base>>).
    template <typename U, std::enable_if_t<std::is_constructible_v<T, U &&> &&
                                               !std::is_same_v<std::decay_t<U>, T> &&
                                               !std::is_same_v<std::decay_t<U>, Result<T>> &&
                                               !std::is_same_v<std::decay_t<U>, Err> &&
                                               !std::is_same_v<std::decay_t<U>, ErrCode>,
                                           int> = 0>
    Result(U &&value) noexcept(std::is_nothrow_constructible_v<T, U &&>)
        : data_(std::in_place_index<0>, T(std::forward<U>(value)))
    {
    }
    Result(Err error) noexcept : data_(std::in_place_index<1>, std::move(error)) {}
    Result(ErrCode code) noexcept : data_(std::in_place_index<1>, Err(code)) {}

    bool hasValue() const noexcept
    {
        return data_.index() == 0;
    }
    bool hasError() const noexcept
    {
        return data_.index() == 1;
    }
    explicit operator bool() const noexcept
    {
        return hasValue();
    }

    T &value() &
    {
        return std::get<0>(data_);
    }
    const T &value() const &
    {
        return std::get<0>(data_);
    }
    T &&value() &&
    {
        return std::get<0>(std::move(data_));
    }
    Err &error() &
    {
        return std::get<1>(data_);
    }
    const Err &error() const &
    {
        return std::get<1>(data_);
    }
    Err &&error() &&
    {
        return std::get<1>(std::move(data_));
    }
    T *operator->()
    {
        return &std::get<0>(data_);
    }
    const T *operator->() const
    {
        return &std::get<0>(data_);
    }

    template <typename U> T valueOr(U &&alt) const &
    {
        return hasValue() ? value() : static_cast<T>(std::forward<U>(alt));
    }
    template <typename U> T valueOr(U &&alt) &&
    {
        return hasValue() ? std::move(*this).value() : static_cast<T>(std::forward<U>(alt));
    }

  private:
    std::variant<T, Err> data_;
};

/// Success or an Err.
template <> class Result<void>
{
  public:
    Result() noexcept = default;
    Result(Err error) noexcept : error_(std::move(error)) {}
    Result(ErrCode code) noexcept : error_(Err(code)) {}

    bool hasValue() const noexcept
    {
        return !error_.has_value();
    }
    bool hasError() const noexcept
    {
        return error_.has_value();
    }
    explicit operator bool() const noexcept
    {
        return hasValue();
    }
    Err &error() &
    {
        return *error_;
    }
    const Err &error() const &
    {
        return *error_;
    }

  private:
    std::optional<Err> error_;
};

using Status = Result<void>;

inline Status Ok() noexcept
{
    return Status();
}

template <typename T> std::future<std::decay_t<T>> make_ready_future(T &&value)
{
    std::promise<std::decay_t<T>> p;
    p.set_value(std::forward<T>(value));
    return p.get_future();
}

inline std::future<void> make_ready_future()
{
    std::promise<void> p;
    p.set_value();
    return p.get_future();
}

// ===================================================================================== executor

/// A one-shot, move-only void() callable (calling it consumes it).
class Func
{
  public:
    Func() noexcept = default;
    template <typename F>
    requires(!std::is_same_v<std::decay_t<F>, Func> && std::is_invocable_v<std::decay_t<F> &>)
        Func(F &&f)
        : p_(new Impl<std::decay_t<F>>(std::forward<F>(f)))
    {
    }
    Func(Func &&) noexcept = default;
    Func &operator=(Func &&) noexcept = default;

    explicit operator bool() const noexcept
    {
        return p_ != nullptr;
    }
    void operator()()
    {
        std::unique_ptr<Base> p = std::move(p_);
        if (p)
            p->call();
    }

  private:
    struct Base {
        virtual ~Base() = default;
        virtual void call() = 0;
    };
    template <typename F> struct Impl final : Base {
        template <typename G> explicit Impl(G &&g) : f(std::forward<G>(g)) {}
        void call() override
        {
            f();
        }
        F f;
    };
    std::unique_ptr<Base> p_;
};

class EventBase;

namespace detail
{

/// The loop behind an EventBase, shared with every connection and server made on it, so that
/// the C loop is freed only after the last of them (async.h: free connections before the loop).
struct EvbCore {
    using IOCallback = std::function<void(uint32_t)>;
    struct Watch {
        IOCallback cb;
    };

    tf_evb *evb = nullptr;
    std::unordered_map<int, std::unique_ptr<Watch>> watches; // loop thread only
    std::mutex graveMu;
    std::vector<std::unique_ptr<Watch>> grave; // replaced watches, freed later

    EvbCore()
    {
        if (tf_evb_new(&evb) != TF_OK)
            throw std::system_error(errno, std::system_category(), "tcpframe: tf_evb_new failed");
    }
    EvbCore(const EvbCore &) = delete;
    EvbCore &operator=(const EvbCore &) = delete;
    ~EvbCore()
    {
        // BAD_STATE on the loop's own thread: the loop is then left to the process.
        if (evb != nullptr)
            (void)tf_evb_free(evb);
    }

    /// A watch that may be running now: freed in a later batch of the loop, or with the core.
    void retire(std::unique_ptr<Watch> w)
    {
        if (!w)
            return;
        Watch *raw = w.release();
        if (tf_evb_dispatch(evb, &free_watch, raw) != TF_OK) {
            std::lock_guard<std::mutex> g(graveMu);
            grave.emplace_back(raw);
        }
    }
    static void free_watch(void *p)
    {
        delete static_cast<Watch *>(p);
    }
    static void on_fd(tf_evb *, int, unsigned ready, void *arg)
    {
        uint32_t ev = 0;
        ev |= (ready & TF_EVB_READ) != 0 ? static_cast<uint32_t>(EPOLLIN) : 0u;
        ev |= (ready & TF_EVB_WRITE) != 0 ? static_cast<uint32_t>(EPOLLOUT) : 0u;
        ev |= (ready & TF_EVB_ERROR) != 0 ? static_cast<uint32_t>(EPOLLERR) : 0u;
        ev |= (ready & TF_EVB_HUP) != 0 ? static_cast<uint32_t>(EPOLLHUP) : 0u;
        static_cast<Watch *>(arg)->cb(ev);
    }
};

inline void run_func(void *arg)
{
    std::unique_ptr<Func> f(static_cast<Func *>(arg));
    (*f)();
}
inline void call_func(void *arg)
{
    (*static_cast<Func *>(arg))();
}

} // namespace detail

/// A single-threaded event loop with cross-thread dispatch (uniflow's EventBase interface) over
/// a tcpframe loop (tf_evb). Every callback runs on the loop thread.
class EventBase
{
  public:
    /// Callback for fd events with the epoll revents mask (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP).
    using IOCallback = std::function<void(uint32_t revents)>;

    /// Throws std::system_error if the loop cannot be created.
    EventBase() : core_(std::make_shared<detail::EvbCore>()) {}
    /// Stops the loop (draining queued work) if it still runs.
    virtual ~EventBase()
    {
        stop();
    }
    EventBase(const EventBase &) = delete;
    EventBase &operator=(const EventBase &) = delete;
    EventBase(EventBase &&) = delete;
    EventBase &operator=(EventBase &&) = delete;

    /// Run the loop on the calling thread until stop(). Once only.
    void loop()
    {
        (void)tf_evb_loop(core_->evb);
    }
    /// Make the loop exit (after draining what was dispatched). Any thread; idempotent.
    void stop() noexcept
    {
        (void)tf_evb_stop(core_->evb);
    }

    /// Run func later on the loop thread (always deferred). After stop() it never runs.
    void dispatch(Func func)
    {
        auto *p = new Func(std::move(func));
        if (tf_evb_dispatch(core_->evb, &detail::run_func, p) != TF_OK)
            delete p;
    }
    /// Run func now if on the loop thread, else as dispatch().
    void dispatchInline(Func func)
    {
        if (inLoopThread()) {
            func();
            return;
        }
        dispatch(std::move(func));
    }
    /// Run func on the loop thread and wait for it (inline on the loop thread). Never hangs:
    /// after stop(), or from another loop's thread, func does not run.
    void dispatchAndWait(Func func)
    {
        (void)tf_evb_dispatch_and_wait(core_->evb, &detail::call_func, &func);
    }

    bool inLoopThread() const noexcept
    {
        return tf_evb_in_loop_thread(core_->evb);
    }
    bool isLoopRunning() const noexcept
    {
        return tf_evb_is_running(core_->evb);
    }

    /// Watch fd for events (EPOLLIN / EPOLLOUT bits; errors and hang-ups always reported),
    /// replacing any earlier watch of it. Any thread.
    void registerFd(int fd, uint32_t events, IOCallback cb)
    {
        std::shared_ptr<detail::EvbCore> core = core_;
        dispatchInline([core, fd, events, cb = std::move(cb)]() mutable {
            auto w =
                std::make_unique<detail::EvbCore::Watch>(detail::EvbCore::Watch{std::move(cb)});
            unsigned ev = ((events & EPOLLIN) != 0 ? TF_EVB_READ : 0u) |
                          ((events & EPOLLOUT) != 0 ? TF_EVB_WRITE : 0u);
            if (tf_evb_register_fd(core->evb, fd, ev, &detail::EvbCore::on_fd, w.get()) != TF_OK)
                return;
            auto &slot = core->watches[fd];
            core->retire(std::move(slot));
            slot = std::move(w);
        });
    }
    /// Stop watching fd (deferred to the loop thread; wait with dispatchAndWait before close).
    void unregisterFd(int fd)
    {
        std::shared_ptr<detail::EvbCore> core = core_;
        dispatch([core, fd]() {
            (void)tf_evb_unregister_fd(core->evb, fd);
            auto it = core->watches.find(fd);
            if (it != core->watches.end()) {
                core->retire(std::move(it->second));
                core->watches.erase(it);
            }
        });
    }

    /// tcpframe extension: the C loop, and the shared owner of it.
    tf_evb *native() const noexcept
    {
        return core_->evb;
    }
    const std::shared_ptr<detail::EvbCore> &core() const noexcept
    {
        return core_;
    }
    /// tcpframe extension: run the loop on a thread the library owns (ScopedEventBaseThread).
    void startThread()
    {
        tf_err e = tf_evb_start(core_->evb);
        if (e != TF_OK)
            throw std::system_error(e == TF_ERR_IO ? errno : EINVAL, std::system_category(),
                                    "tcpframe: tf_evb_start failed");
    }

  private:
    std::shared_ptr<detail::EvbCore> core_;
};

/// uniflow's two EventBase flavours are one loop here.
using LockFreeEventBase = EventBase;
using MutexEventBase = EventBase;

/// A thread that runs an EventBase from construction to destruction.
template <typename EventBaseImpl = EventBase> class TScopedEventBaseThread
{
  public:
    explicit TScopedEventBaseThread(std::string name = "")
    {
        evb_.startThread();
        evb_.dispatchAndWait([this, n = std::move(name)]() noexcept {
            tid_ = std::this_thread::get_id();
            if (!n.empty())
                (void)pthread_setname_np(pthread_self(), n.substr(0, 15).c_str());
        });
    }
    /// Stops the loop and joins its thread.
    ~TScopedEventBaseThread()
    {
        evb_.stop();
    }
    TScopedEventBaseThread(const TScopedEventBaseThread &) = delete;
    TScopedEventBaseThread &operator=(const TScopedEventBaseThread &) = delete;
    TScopedEventBaseThread(TScopedEventBaseThread &&) = delete;
    TScopedEventBaseThread &operator=(TScopedEventBaseThread &&) = delete;

    EventBase *getEventBase()
    {
        return &evb_;
    }
    std::thread::id getThreadId() const
    {
        return tid_;
    }

  private:
    EventBaseImpl evb_;
    std::thread::id tid_{};
};

using ScopedEventBaseThread = TScopedEventBaseThread<EventBase>;

// ===================================================================================== controller

namespace controller
{

/// A framed, bidirectional connection to one peer: at most one send() and one recv() in flight.
class Conn
{
  public:
    virtual ~Conn() = default;

    /// Send one message; |data| must outlive the future.
    [[nodiscard]] virtual std::future<Result<size_t>> send(std::span<const uint8_t> data) = 0;
    /// Receive one message into |data| (resized to its length).
    [[nodiscard]] virtual std::future<Result<size_t>> recv(std::vector<uint8_t> &data) = 0;
    /// Receive one message into |buf|; an error if it is longer. |buf| must outlive the future.
    [[nodiscard]] virtual std::future<Result<size_t>> recv(std::span<uint8_t> buf) = 0;
    /// Interrupt a blocked recv(); later calls fail.
    virtual void close() {}

    /// Receive-side counters (relaxed atomics, read and cleared by any thread).
    struct RecvPhaseStats {
        std::atomic<uint64_t> interFrameStallNs{0};
        std::atomic<uint64_t> payloadDrainNs{0};
        std::atomic<uint64_t> frames{0};
        std::atomic<uint64_t> payloadBytes{0};

        void reset()
        {
            interFrameStallNs.store(0, std::memory_order_relaxed);
            payloadDrainNs.store(0, std::memory_order_relaxed);
            frames.store(0, std::memory_order_relaxed);
            payloadBytes.store(0, std::memory_order_relaxed);
        }
    };

    RecvPhaseStats &recvPhaseStats()
    {
        return recvPhaseStats_;
    }

  private:
    RecvPhaseStats recvPhaseStats_;
};

class Server
{
  public:
    virtual ~Server() = default;
    virtual Status init() = 0;
    virtual const std::string &getId() const = 0;
    /// The next connection, or nullptr (not initialised, shut down, failed).
    [[nodiscard]] virtual std::future<std::unique_ptr<Conn>> accept() = 0;
    /// Make every pending and later accept() give nullptr. Thread-safe, idempotent.
    virtual void shutdown() noexcept = 0;
};

class Client
{
  public:
    Client() = default;
    virtual ~Client() = default;
    /// A connection to "host:port", or nullptr.
    [[nodiscard]] virtual std::future<std::unique_ptr<Conn>> connect(std::string id) = 0;
};

/// Socket configuration for servers and clients: a value sets the option, std::nullopt leaves
/// it to the kernel. Default-constructed: uniflow's production values.
struct TcpSocketConfig {
    std::optional<std::chrono::seconds> connTimeout{std::chrono::seconds{30}};
    std::optional<int> socketBufSize{1 << 20};
    std::optional<bool> tcpNoDelay{true};
    std::optional<bool> enableKeepalive{true};
    std::optional<std::chrono::seconds> keepaliveIdle{std::chrono::seconds{60}};
    std::optional<std::chrono::seconds> keepaliveInterval{std::chrono::seconds{5}};
    std::optional<int> keepaliveCount{3};
    std::optional<std::chrono::milliseconds> userTimeout{std::chrono::milliseconds{60000}};

    int acceptRetryCnt{5};
    size_t connectRetries{10};
    std::chrono::milliseconds retryTimeout{std::chrono::milliseconds{1000}};

    /// Every optional field std::nullopt.
    static TcpSocketConfig osDefaults()
    {
        TcpSocketConfig c;
        c.connTimeout.reset();
        c.socketBufSize.reset();
        c.tcpNoDelay.reset();
        c.enableKeepalive.reset();
        c.keepaliveIdle.reset();
        c.keepaliveInterval.reset();
        c.keepaliveCount.reset();
        c.userTimeout.reset();
        return c;
    }

    /// The tcpframe configuration these fields give (tcpframe extension).
    tcpframe::Config toTcpframe() const
    {
        tcpframe::Config c;
        using ms = std::chrono::milliseconds;
        if (!connTimeout)
            c.connect_timeout = ms{30000};
        else if (connTimeout->count() > 0)
            c.connect_timeout = std::chrono::duration_cast<ms>(*connTimeout);
        else
            c.connect_timeout.reset();
        c.sndbuf = socketBufSize ? std::optional<int64_t>(*socketBufSize) : std::nullopt;
        c.rcvbuf = c.sndbuf;
        c.nodelay = tcpNoDelay;
        c.keepalive = enableKeepalive;
        c.keepalive_idle = keepaliveIdle;
        c.keepalive_intvl = keepaliveInterval;
        c.keepalive_cnt = keepaliveCount ? std::optional<int64_t>(*keepaliveCount) : std::nullopt;
        c.user_timeout = userTimeout;
        c.accept_retries = acceptRetryCnt;
        c.connect_retries =
            static_cast<int64_t>(connectRetries > 1000000 ? 1000000 : connectRetries);
        int64_t base = retryTimeout.count() < 0 ? 0 : retryTimeout.count();
        int64_t n = connectRetries < 1
                        ? 1
                        : static_cast<int64_t>(connectRetries > 64 ? 64 : connectRetries);
        int64_t cap = base > INT32_MAX / n ? INT32_MAX : base * n;
        c.retry_delay = ms{base > INT32_MAX ? INT32_MAX : base};
        c.retry_max_delay = ms{cap};
        return c;
    }

    /// InvalidArgument naming the first bad field, else Ok.
    Status validate() const
    {
        auto bad = [](const char *what) { return Status(Err(ErrCode::InvalidArgument, what)); };
        if (connTimeout && connTimeout->count() < 0)
            return bad("connTimeout must not be negative");
        if (socketBufSize && *socketBufSize <= 0)
            return bad("socketBufSize must be positive");
        if (keepaliveIdle && keepaliveIdle->count() <= 0)
            return bad("keepaliveIdle must be positive");
        if (keepaliveInterval && keepaliveInterval->count() <= 0)
            return bad("keepaliveInterval must be positive");
        if (keepaliveCount && *keepaliveCount <= 0)
            return bad("keepaliveCount must be positive");
        if (userTimeout && userTimeout->count() < 0)
            return bad("userTimeout must not be negative");
        if (acceptRetryCnt <= 0)
            return bad("acceptRetryCnt must be positive");
        if (retryTimeout.count() < 0)
            return bad("retryTimeout must not be negative");
        auto r = toTcpframe().validate();
        if (!r)
            return Status(Err(ErrCode::InvalidArgument, r.error().what()));
        return Ok();
    }
};

/// Blocking I/O policy of TcpConn.
struct SyncIO {
};

/// Event-loop I/O policy of TcpConn. The EventBase must outlive the calls made on it (its
/// memory outlives the connection in any case).
struct AsyncIO {
    EventBase &evb;
    explicit AsyncIO(EventBase &e) : evb(e) {}
};

namespace detail
{

/// uniflow's code for a tcpframe failure.
inline Err toErr(const tcpframe::Error &e)
{
    ErrCode c = ErrCode::ConnectionFailed;
    switch (e.code) {
    case TF_ERR_TIMEOUT:
        c = ErrCode::Timeout;
        break;
    case TF_ERR_BUSY:
    case TF_ERR_NOMEM:
        c = ErrCode::ResourceExhausted;
        break;
    case TF_ERR_CANCELLED:
    case TF_ERR_SHUTDOWN:
        c = ErrCode::Aborted;
        break;
    case TF_ERR_NOT_CONNECTED:
    case TF_ERR_BAD_STATE:
        c = ErrCode::NotConnected;
        break;
    case TF_ERR_INVALID_ARGUMENT:
    case TF_ERR_BAD_ADDRESS:
    case TF_ERR_TOO_LARGE:
    case TF_ERR_BUFFER_TOO_SMALL:
        c = ErrCode::InvalidArgument;
        break;
    default:
        break;
    }
    return Err(c, e.what());
}

inline std::future<Result<size_t>> readyErr(ErrCode c, const char *what)
{
    return make_ready_future(Result<size_t>(Err(c, what)));
}

/// "host:port" split at the last colon; the port is 0..65535 in decimal.
struct HostPort {
    std::string host;
    int port = -1;
};
inline std::optional<HostPort> splitId(const std::string &id)
{
    auto colon = id.rfind(':');
    if (colon == std::string::npos || colon + 1 == id.size() || id.size() - colon - 1 > 5)
        return std::nullopt;
    int port = 0;
    for (size_t i = colon + 1; i < id.size(); i++) {
        if (id[i] < '0' || id[i] > '9')
            return std::nullopt;
        port = port * 10 + (id[i] - '0');
    }
    if (port > 65535)
        return std::nullopt;
    std::string host = id.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    return HostPort{host, port};
}
/// The tcpframe address for a numeric host ("" / "*": the dual-stack wildcard, if allowed).
inline std::optional<std::string> numericAddr(const HostPort &hp, bool wildcardOk)
{
    std::string port = std::to_string(hp.port);
    if (hp.host.empty() || hp.host == "*") {
        if (!wildcardOk)
            return std::nullopt;
        return "[::]:" + port;
    }
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, hp.host.c_str(), buf) == 1)
        return hp.host + ":" + port;
    if (inet_pton(AF_INET6, hp.host.c_str(), buf) == 1)
        return "[" + hp.host + "]:" + port;
    return std::nullopt;
}

/// The magic exchange on a socket, blocking the calling thread for at most |timeoutMs|.
inline bool blockingHandshake(int fd, int timeoutMs)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return false;
    tf_fdio io;
    tf_fdio_init(&io, fd, fd);
    tf_hs hs;
    tf_hs_init(&hs);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
    for (;;) {
        tf_step s = tf_hs_try(&hs, tf_fdio_io(&io));
        if (s == TF_DONE)
            return true;
        if (s == TF_ERROR)
            return false;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return false;
        unsigned w = tf_hs_wants(&hs);
        short ev = static_cast<short>(((w & TF_WANT_READ) != 0 ? POLLIN : 0) |
                                      ((w & TF_WANT_WRITE) != 0 ? POLLOUT : 0));
        if (tf_fd_wait(fd, ev, static_cast<int>(left.count())) != TF_OK)
            return false;
    }
}

} // namespace detail

template <typename AcceptPolicy> class BasicTcpServer;
template <typename ConnectPolicy> class BasicTcpClient;

/// A TCP connection: TcpConn<SyncIO> blocks and returns ready futures; TcpConn<AsyncIO> runs on
/// an EventBase and returns pending futures (a second send or recv while one is in flight gives
/// ResourceExhausted).
template <typename IOPolicy = SyncIO> class TcpConn : public Conn
{
  public:
    /// Blocking connection over a connected socket after the magic exchange (at most 5 s);
    /// nullptr if it fails (the socket is closed).
    static std::unique_ptr<TcpConn> create(int sock) requires std::same_as<IOPolicy, SyncIO>
    {
        auto c = tcpframe::SyncConn::from_fd(sock, rawConfig());
        if (!c)
            return nullptr;
        return std::unique_ptr<TcpConn>(new TcpConn(std::move(*c), -1));
    }

    /// Connection on |evb| over a connected socket after the magic exchange (blocking the
    /// calling thread, as uniflow; called on the loop thread the exchange runs on the loop
    /// instead and a failure shows on the first operation); nullptr if it fails (the socket is
    /// closed).
    static std::unique_ptr<TcpConn> create(int sock,
                                           EventBase &evb) requires std::same_as<IOPolicy, AsyncIO>
    {
        tcpframe::Config cfg = rawConfig();
        if (!evb.inLoopThread()) {
            if (!detail::blockingHandshake(sock,
                                           static_cast<int>(cfg.handshake_timeout->count()))) {
                ::close(sock);
                return nullptr;
            }
            cfg.handshake = false;
        }
        auto c = tcpframe::AsyncConn::from_fd(evb.native(), sock, cfg);
        if (!c) {
            ::close(sock);
            return nullptr;
        }
        return std::unique_ptr<TcpConn>(new TcpConn(std::move(*c), evb.core(), sock));
    }

    TcpConn(const TcpConn &) = delete;
    TcpConn &operator=(const TcpConn &) = delete;
    TcpConn(TcpConn &&) = delete;
    TcpConn &operator=(TcpConn &&) = delete;

    /// Pending operations fail (Aborted) before it returns.
    ~TcpConn() override
    {
        async_ = tcpframe::AsyncConn(); // completes what is in flight while *this is whole
        sync_ = tcpframe::SyncConn();
    }

    std::future<Result<size_t>> send(std::span<const uint8_t> data) override
    {
        if (closed_.load(std::memory_order_acquire))
            return detail::readyErr(ErrCode::NotConnected, "connection closed");
        if (sync_) {
            auto r = sync_.send(data, ioTimeout());
            if (!r)
                return make_ready_future(Result<size_t>(detail::toErr(r.error())));
            return make_ready_future(Result<size_t>(data.size()));
        }
        if (blocking() && loopThread())
            return detail::readyErr(ErrCode::InvalidArgument, "blocking call on the loop thread");
        if (sendBusy_.exchange(true, std::memory_order_acq_rel))
            return detail::readyErr(ErrCode::ResourceExhausted, "a send is already in flight");
        sendPromise_ = std::promise<Result<size_t>>();
        auto fut = sendPromise_.get_future();
        auto r = async_.send(sendOp_, data, blocking() ? ioTimeout() : std::nullopt);
        if (!r) {
            auto p = std::move(sendPromise_);
            sendBusy_.store(false, std::memory_order_release);
            p.set_value(detail::toErr(r.error()));
        }
        if (blocking())
            fut.wait();
        return fut;
    }

    std::future<Result<size_t>> recv(std::vector<uint8_t> &data) override
    {
        if (closed_.load(std::memory_order_acquire))
            return detail::readyErr(ErrCode::NotConnected, "connection closed");
        if (sync_) {
            auto t0 = std::chrono::steady_clock::now();
            auto r = sync_.recv_alloc(ioTimeout());
            if (!r)
                return make_ready_future(Result<size_t>(detail::toErr(r.error())));
            data.assign(r->data(), r->data() + r->size());
            count(t0, r->size());
            return make_ready_future(Result<size_t>(r->size()));
        }
        return asyncRecv(&data, {});
    }

    std::future<Result<size_t>> recv(std::span<uint8_t> buf) override
    {
        if (closed_.load(std::memory_order_acquire))
            return detail::readyErr(ErrCode::NotConnected, "connection closed");
        if (sync_) {
            auto t0 = std::chrono::steady_clock::now();
            auto r = sync_.recv(buf, ioTimeout());
            if (!r)
                return make_ready_future(Result<size_t>(detail::toErr(r.error())));
            count(t0, *r);
            return make_ready_future(Result<size_t>(*r));
        }
        return asyncRecv(nullptr, buf);
    }

    /// Interrupt a blocked recv(); later sends and receives fail (NotConnected).
    void close() override
    {
        if (closed_.exchange(true, std::memory_order_acq_rel))
            return;
        if (sync_) {
            ::shutdown(sync_.fd(), SHUT_RDWR); // wakes a receiver blocked in poll()
            return;
        }
        if (recvBusy_.load(std::memory_order_acquire)) {
            (void)async_.abort();
        } else {
            auto f = async_.close(); // flush, FIN; the outcome is not needed
            (void)f;
        }
    }

    /// The socket, or -1 where the connection was set up by the loop (async accept/connect).
    int getFd() const
    {
        return sync_ ? sync_.fd() : fd_;
    }

  private:
    template <typename> friend class BasicTcpServer;
    template <typename> friend class BasicTcpClient;

    static constexpr int64_t kDefaultIoMs = 30000;

    /// create(fd): the socket keeps its options and has no I/O timeout, as in uniflow; only the
    /// magic exchange has a deadline (5 s), so a silent peer cannot hold create() forever.
    static tcpframe::Config rawConfig()
    {
        tcpframe::Config c = tcpframe::Config::os_defaults();
        c.handshake_timeout = std::chrono::milliseconds(5000);
        return c;
    }

    struct SendDone {
        TcpConn *self;
        void operator()(tcpframe::Completion &c) const
        {
            self->sendDone(c);
        }
    };
    struct RecvDone {
        TcpConn *self;
        void operator()(tcpframe::Completion &c) const
        {
            self->recvDone(c);
        }
    };

    TcpConn(tcpframe::SyncConn c, int64_t ioMs) : ioMs_(ioMs), sync_(std::move(c)) {}
    TcpConn(tcpframe::AsyncConn c, std::shared_ptr<tcpframe::uniflow::detail::EvbCore> core, int fd,
            int64_t ioMs = -1)
        : core_(std::move(core)), fd_(fd), ioMs_(ioMs), async_(std::move(c))
    {
    }

    /// TcpConn<SyncIO> over an async connection: calls wait for their outcome.
    static constexpr bool blocking()
    {
        return std::is_same_v<IOPolicy, SyncIO>;
    }
    bool loopThread() const
    {
        return core_ && tf_evb_in_loop_thread(core_->evb);
    }
    tcpframe::Timeout ioTimeout() const
    {
        if (ioMs_ <= 0)
            return std::nullopt;
        return std::chrono::milliseconds(ioMs_);
    }
    void count(std::chrono::steady_clock::time_point t0, size_t n)
    {
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::steady_clock::now() - t0);
        auto &s = recvPhaseStats();
        s.interFrameStallNs.fetch_add(static_cast<uint64_t>(ns.count()), std::memory_order_relaxed);
        s.frames.fetch_add(1, std::memory_order_relaxed);
        s.payloadBytes.fetch_add(n, std::memory_order_relaxed);
    }

    std::future<Result<size_t>> asyncRecv(std::vector<uint8_t> *vec, std::span<uint8_t> buf)
    {
        if (blocking() && loopThread())
            return detail::readyErr(ErrCode::InvalidArgument, "blocking call on the loop thread");
        if (recvBusy_.exchange(true, std::memory_order_acq_rel))
            return detail::readyErr(ErrCode::ResourceExhausted, "a recv is already in flight");
        recvPromise_ = std::promise<Result<size_t>>();
        recvVec_ = vec;
        recvStart_ = std::chrono::steady_clock::now();
        auto fut = recvPromise_.get_future();
        tcpframe::Timeout t =
            blocking() ? ioTimeout() : std::nullopt; // SyncIO: connTimeout, as uniflow
        auto r = vec != nullptr ? async_.recv(recvOp_, t) : async_.recv(recvOp_, buf, t);
        if (!r) {
            auto p = std::move(recvPromise_);
            recvBusy_.store(false, std::memory_order_release);
            p.set_value(detail::toErr(r.error()));
        }
        if (blocking())
            fut.wait();
        return fut;
    }
    void sendDone(tcpframe::Completion &c)
    {
        auto p = std::move(sendPromise_);
        sendBusy_.store(false, std::memory_order_release);
        if (c.ok())
            p.set_value(Result<size_t>(c.data.size()));
        else
            p.set_value(detail::toErr(c.error));
    }
    void recvDone(tcpframe::Completion &c)
    {
        auto p = std::move(recvPromise_);
        std::vector<uint8_t> *vec = std::exchange(recvVec_, nullptr);
        if (c.ok()) {
            if (vec != nullptr)
                vec->assign(c.data.begin(), c.data.end());
            count(recvStart_, c.data.size());
        }
        recvBusy_.store(false, std::memory_order_release);
        if (c.ok())
            p.set_value(Result<size_t>(c.data.size()));
        else
            p.set_value(detail::toErr(c.error));
    }

    // Declaration order matters: async_ is destroyed first (its pending callbacks still find
    // the promises and ops), core_ last (the loop outlives the connection).
    std::shared_ptr<tcpframe::uniflow::detail::EvbCore> core_;
    int fd_ = -1;
    int64_t ioMs_ = kDefaultIoMs;
    std::atomic<bool> closed_{false};
    std::atomic<bool> sendBusy_{false};
    std::atomic<bool> recvBusy_{false};
    std::promise<Result<size_t>> sendPromise_;
    std::promise<Result<size_t>> recvPromise_;
    std::vector<uint8_t> *recvVec_ = nullptr;
    std::chrono::steady_clock::time_point recvStart_{};
    tcpframe::Op<SendDone> sendOp_{SendDone{this}};
    tcpframe::Op<RecvDone> recvOp_{RecvDone{this}};
    tcpframe::SyncConn sync_;
    tcpframe::AsyncConn async_;
};

/// Accept policy: accept() blocks the calling thread and returns a ready future.
struct SyncAccept {
};

/// Accept policy: accepting and handshakes run on the EventBase; accept() returns a pending
/// future. The EventBase's memory outlives the server whatever the destruction order.
struct AsyncAccept {
    explicit AsyncAccept(EventBase &evb) : evb_(&evb) {}
    EventBase *evb_;
};

/// TcpServer("host:0") and AsyncTcpServer("host:0", {}, evb). The id is "host:port" split at the
/// last colon (numeric host; "" or "*": every address, dual-stack). The constructor throws
/// std::invalid_argument for an id that does not parse or an invalid config; init() reports a
/// bad host, a double init or a bind failure.
template <typename AcceptPolicy> class BasicTcpServer : public Server
{
  public:
    template <typename... PolicyArgs>
    explicit BasicTcpServer(std::string id, TcpSocketConfig config = {}, PolicyArgs &&...args)
        : id_(std::move(id)), config_(std::move(config)), policy_(std::forward<PolicyArgs>(args)...)
    {
        auto hp = detail::splitId(id_);
        if (!hp)
            throw std::invalid_argument("Invalid server address: \"" + id_ +
                                        "\" (expected host:port)");
        host_ = hp->host;
        port_ = hp->port;
        auto st = config_.validate();
        if (!st)
            throw std::invalid_argument("Invalid socket config: " + st.error().toString());
    }

    ~BasicTcpServer() override
    {
        shutdown();
    }
    BasicTcpServer(const BasicTcpServer &) = delete;
    BasicTcpServer &operator=(const BasicTcpServer &) = delete;
    BasicTcpServer(BasicTcpServer &&) = delete;
    BasicTcpServer &operator=(BasicTcpServer &&) = delete;

    Status init() override
    {
        std::lock_guard<std::mutex> g(mu_);
        if (initialized_)
            return Err(ErrCode::InvalidArgument, "server " + id_ + " is already initialized");
        if (shut_)
            return Err(ErrCode::InvalidArgument, "server " + id_ + " is shut down");
        auto addr = detail::numericAddr(detail::HostPort{host_, port_}, true);
        if (!addr)
            return Err(ErrCode::InvalidArgument,
                       "bad host \"" + host_ + "\" in " + id_ + " (numeric address expected)");
        tcpframe::Config cfg = config_.toTcpframe();
        if constexpr (std::is_same_v<AcceptPolicy, AsyncAccept>) {
            core_ = policy_.evb_->core();
            auto s = tcpframe::AsyncServer::create(core_->evb);
            if (!s)
                return detail::toErr(s.error());
            auto r = s->listen(*addr, cfg);
            if (!r)
                return Err(ErrCode::TransportError, r.error().what());
            port_ = s->port();
            async_.emplace(std::move(*s));
        } else {
            auto s = tcpframe::SyncServer::listen(*addr, cfg);
            if (!s)
                return Err(ErrCode::TransportError, s.error().what());
            port_ = s->port();
            sync_.emplace(std::move(*s));
        }
        initialized_ = true;
        return Ok();
    }

    const std::string &getId() const override
    {
        return id_;
    }

    std::future<std::unique_ptr<Conn>> accept() override
    {
        if constexpr (std::is_same_v<AcceptPolicy, AsyncAccept>) {
            std::lock_guard<std::mutex> g(mu_);
            if (!initialized_ || shut_)
                return make_ready_future(std::unique_ptr<Conn>());
            auto p = std::make_shared<std::promise<std::unique_ptr<Conn>>>();
            auto fut = p->get_future();
            auto core = core_;
            int64_t ioMs = ioMillis();
            auto r =
                async_->accept().then([p, core, ioMs](tcpframe::Result<tcpframe::AsyncConn> c) {
                    std::unique_ptr<Conn> out;
                    if (c)
                        out.reset(new TcpConn<SyncIO>(std::move(*c), core, -1, ioMs));
                    p->set_value(std::move(out));
                });
            if (!r)
                p->set_value(nullptr);
            return fut;
        } else {
            {
                std::lock_guard<std::mutex> g(mu_);
                if (!initialized_ || shut_)
                    return make_ready_future(std::unique_ptr<Conn>());
                active_++;
            }
            auto c = sync_->accept();
            std::unique_ptr<Conn> out;
            if (c)
                out.reset(new TcpConn<SyncIO>(std::move(*c), ioMillis()));
            {
                std::lock_guard<std::mutex> g(mu_);
                if (--active_ == 0)
                    idle_.notify_all();
            }
            return make_ready_future(std::move(out));
        }
    }

    /// The bound port after init() (the requested one before).
    int getPort() const
    {
        return port_;
    }

    /// Any thread, idempotent; returns once no accept() runs on the server any more.
    void shutdown() noexcept override
    {
        {
            // After shut_ is set, init() changes nothing more: the servers are stable.
            std::lock_guard<std::mutex> g(mu_);
            shut_ = true;
        }
        if (sync_)
            (void)sync_->shutdown();
        if (async_)
            (void)async_->shutdown();
        std::unique_lock<std::mutex> g(mu_);
        idle_.wait(g, [this] { return active_ == 0; });
    }

  private:
    int64_t ioMillis() const
    {
        if (!config_.connTimeout)
            return 30000;
        return std::chrono::duration_cast<std::chrono::milliseconds>(*config_.connTimeout).count();
    }

    std::string id_;
    std::string host_;
    int port_{-1};
    TcpSocketConfig config_;
    AcceptPolicy policy_;
    std::mutex mu_;
    std::condition_variable idle_;
    int active_ = 0;
    bool initialized_ = false;
    bool shut_ = false;
    std::shared_ptr<tcpframe::uniflow::detail::EvbCore> core_;
    std::optional<tcpframe::SyncServer> sync_;
    std::optional<tcpframe::AsyncServer> async_;
};

using TcpServer = BasicTcpServer<SyncAccept>;
using AsyncTcpServer = BasicTcpServer<AsyncAccept>;

/// Connect policy: connect() blocks (retries with back-off) and returns a ready future.
struct SyncConnect {
};

/// Connect policy: the connect, its retries and the handshake run on the EventBase.
struct AsyncConnect {
    explicit AsyncConnect(EventBase &evb) : evb_(&evb) {}
    EventBase *evb_;
};

/// TcpClient() and AsyncTcpClient({}, evb). The constructor throws std::invalid_argument for an
/// invalid config. connect() gives nullptr for an id that does not parse or is not numeric, a
/// connect that fails, or a peer that fails the magic exchange.
template <typename ConnectPolicy> class BasicTcpClient : public Client
{
  public:
    template <typename... PolicyArgs>
    explicit BasicTcpClient(TcpSocketConfig config = {}, PolicyArgs &&...args)
        : config_(std::move(config)), policy_(std::forward<PolicyArgs>(args)...)
    {
        auto st = config_.validate();
        if (!st)
            throw std::invalid_argument("Invalid socket config: " + st.error().toString());
    }

    ~BasicTcpClient() override = default;
    BasicTcpClient(const BasicTcpClient &) = delete;
    BasicTcpClient &operator=(const BasicTcpClient &) = delete;
    BasicTcpClient(BasicTcpClient &&) = delete;
    BasicTcpClient &operator=(BasicTcpClient &&) = delete;

    std::future<std::unique_ptr<Conn>> connect(std::string id) override
    {
        auto hp = detail::splitId(id);
        std::optional<std::string> addr;
        if (hp)
            addr = detail::numericAddr(*hp, false);
        if (!addr)
            return make_ready_future(std::unique_ptr<Conn>());
        int64_t ioMs = 30000;
        if (config_.connTimeout)
            ioMs =
                std::chrono::duration_cast<std::chrono::milliseconds>(*config_.connTimeout).count();
        if constexpr (std::is_same_v<ConnectPolicy, AsyncConnect>) {
            std::lock_guard<std::mutex> g(mu_);
            if (!async_) {
                core_ = policy_.evb_->core();
                auto c = tcpframe::AsyncClient::create(core_->evb, config_.toTcpframe());
                if (!c)
                    return make_ready_future(std::unique_ptr<Conn>());
                async_.emplace(std::move(*c));
            }
            auto p = std::make_shared<std::promise<std::unique_ptr<Conn>>>();
            auto fut = p->get_future();
            auto core = core_;
            auto r =
                async_->connect(*addr).then([p, core](tcpframe::Result<tcpframe::AsyncConn> c) {
                    std::unique_ptr<Conn> out;
                    if (c)
                        out.reset(new TcpConn<AsyncIO>(std::move(*c), core, -1));
                    p->set_value(std::move(out));
                });
            if (!r)
                p->set_value(nullptr);
            return fut;
        } else {
            auto c = tcpframe::SyncConn::connect(*addr, config_.toTcpframe());
            if (!c)
                return make_ready_future(std::unique_ptr<Conn>());
            return make_ready_future(
                std::unique_ptr<Conn>(new TcpConn<SyncIO>(std::move(*c), ioMs)));
        }
    }

  private:
    TcpSocketConfig config_;
    ConnectPolicy policy_;
    std::mutex mu_;
    std::shared_ptr<tcpframe::uniflow::detail::EvbCore> core_;
    std::optional<tcpframe::AsyncClient> async_; // destroyed first: cancels connects in flight
};

using TcpClient = BasicTcpClient<SyncConnect>;
using AsyncTcpClient = BasicTcpClient<AsyncConnect>;

} // namespace controller
} // namespace tcpframe::uniflow

#endif /* TCPFRAME_UNIFLOW_HPP */
