/* tcpframe/tcpframe.hpp -- idiomatic C++20 over the C API (header-only; links libtcpframe).
 *
 * Every C object has a move-only RAII owner: Loop (tf_evb), Future<T> (tf_future), SyncConn,
 * SyncServer, AsyncConn, AsyncServer, AsyncClient. Nothing on the I/O path throws: a fallible
 * call returns Result<T>, which holds a T or an Error (the tf_err, the OS error number and a
 * sentence for humans). Spans go in (std::span<const uint8_t> or std::span<const std::byte>),
 * vectors, Buffers or spans come out. Timeouts are std::chrono durations; std::nullopt (the
 * default) waits without a limit. The threading and lifetime rules are the C API's: async.h,
 * sync.h, evbase.h and future.h (SPEC.md 8, 9.6, 9.7) -- this header adds no threads and no
 * locks of its own.
 *
 * Allocation. The future style allocates the C promise/op record (one allocation) per
 * operation; the callback style (Op<F>) allocates nothing: the op record and the callable live
 * in the caller's Op object, which must stay where it is until its callback has started.
 * Message-stream and writable callbacks are stored once per connection.
 *
 * Observability (obs.h, SPEC.md 9.10): stats() on connections and servers gives the C struct;
 * on_event(fn) on AsyncServer, AsyncClient and SyncServer keeps every callable it was given until
 * its owner is destroyed (an event under way may still finish in a replaced one); set_log keeps
 * its callables for the life of the process.
 *
 *   auto loop = tcpframe::Loop::create().value();   loop.start();
 *   auto conn = tcpframe::SyncConn::connect("127.0.0.1:7000").value();
 *   conn.send(std::span<const uint8_t>(msg));        // Result<void>
 *   auto reply = conn.recv_vector(std::chrono::seconds(1));   // Result<std::vector<uint8_t>>
 */
#ifndef TCPFRAME_TCPFRAME_HPP
#define TCPFRAME_TCPFRAME_HPP

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "tcpframe/tcpframe.hpp needs C++20 (-std=c++20)"
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <unistd.h>

#include "tcpframe/async.h"
#include "tcpframe/err.h"
#include "tcpframe/evbase.h"
#include "tcpframe/future.h"
#include "tcpframe/obs.h"
#include "tcpframe/sync.h"
#include "tcpframe/tcp.h"

namespace tcpframe
{

// ------------------------------------------------------------------------------------ errors

/// One failure: the library's reason, the OS error number beside it (0 if none) and a sentence
/// naming what failed (may be empty: what() then gives the reason's text).
struct Error {
    tf_err code = TF_OK;
    int os_err = 0;
    std::string message;

    Error() = default;
    Error(tf_err c, int os = 0, std::string msg = {}) : code(c), os_err(os), message(std::move(msg))
    {
    }

    /// The enumerator's name without its prefix ("CLOSED").
    const char *name() const noexcept
    {
        return tf_err_name(code);
    }
    /// The message, else the reason's text plus the OS error's.
    std::string what() const
    {
        if (!message.empty())
            return message;
        std::string s = tf_strerror(code);
        if (os_err != 0) {
            s += ": ";
            s += std::strerror(os_err);
        }
        return s;
    }
};

/// A T or an Error; no exceptions (value() on an error is a precondition violation).
template <typename T> class [[nodiscard]] Result
{
  public:
    Result(T v) noexcept(std::is_nothrow_move_constructible_v<T>)
        : v_(std::in_place_index<0>, std::move(v))
    {
    }
    Result(Error e) noexcept : v_(std::in_place_index<1>, std::move(e)) {}

    bool has_value() const noexcept
    {
        return v_.index() == 0;
    }
    explicit operator bool() const noexcept
    {
        return has_value();
    }

    T &value() &noexcept
    {
        return *std::get_if<0>(&v_);
    }
    const T &value() const &noexcept
    {
        return *std::get_if<0>(&v_);
    }
    T &&value() &&noexcept
    {
        return std::move(*std::get_if<0>(&v_));
    }
    T &operator*() &noexcept
    {
        return value();
    }
    T &&operator*() &&noexcept
    {
        return std::move(value());
    }
    T *operator->() noexcept
    {
        return std::get_if<0>(&v_);
    }
    const T *operator->() const noexcept
    {
        return std::get_if<0>(&v_);
    }

    const Error &error() const &noexcept
    {
        return *std::get_if<1>(&v_);
    }
    Error &&error() &&noexcept
    {
        return std::move(*std::get_if<1>(&v_));
    }
    /// TF_OK for a value.
    tf_err code() const noexcept
    {
        return has_value() ? TF_OK : error().code;
    }

    template <typename U> T value_or(U &&alt) &&
    {
        return has_value() ? std::move(value()) : static_cast<T>(std::forward<U>(alt));
    }

  private:
    std::variant<T, Error> v_;
};

template <> class [[nodiscard]] Result<void>
{
  public:
    Result() noexcept = default;
    Result(Error e) noexcept : e_(std::move(e)) {}

    bool has_value() const noexcept
    {
        return !e_.has_value();
    }
    explicit operator bool() const noexcept
    {
        return has_value();
    }
    const Error &error() const &noexcept
    {
        return *e_;
    }
    Error &&error() &&noexcept
    {
        return std::move(*e_);
    }
    tf_err code() const noexcept
    {
        return e_ ? e_->code : TF_OK;
    }

  private:
    std::optional<Error> e_;
};

namespace detail
{
inline Result<void> status(tf_err e, int os = 0, const char *msg = nullptr)
{
    if (e == TF_OK)
        return {};
    return Error(e, os, msg != nullptr ? std::string(msg) : std::string());
}
inline Result<void> status(tf_err e, const tf_errmsg &m, int os = 0)
{
    return status(e, os, m.text[0] != '\0' ? m.text : nullptr);
}
/// Milliseconds for the C API: -1 for "no limit", else clamped to [0, INT32_MAX].
inline int64_t to_ms(const std::optional<std::chrono::milliseconds> &t) noexcept
{
    if (!t)
        return -1;
    auto n = t->count();
    return n < 0 ? 0 : (n > INT32_MAX ? INT32_MAX : n);
}
/// The port at the end of "host:port" (0 if none).
inline uint16_t port_of(std::string_view addr) noexcept
{
    auto colon = addr.rfind(':');
    if (colon == std::string_view::npos)
        return 0;
    unsigned v = 0;
    for (char ch : addr.substr(colon + 1)) {
        if (ch < '0' || ch > '9' || v > 65535u)
            return 0;
        v = v * 10u + static_cast<unsigned>(ch - '0');
    }
    return v > 65535u ? 0 : static_cast<uint16_t>(v);
}

/// A heap-held callable behind a type-erased base (for callbacks stored once per object).
struct HolderBase {
    virtual ~HolderBase() = default;
};
template <typename F> struct Holder final : HolderBase {
    template <typename G> explicit Holder(G &&g) : fn(std::forward<G>(g)) {}
    F fn;
};

/// Hold |fn| and install it through |set| (called with the Holder<F>*: it hands the C API the
/// trampoline for that holder type and the pointer); on success the holder joins |kept|, which
/// keeps every callable ever installed until its owner goes (one may still be running after it
/// was replaced). On failure nothing is kept.
template <typename F, typename Set>
Result<void> keep_callable(std::vector<std::unique_ptr<HolderBase>> &kept, F &&fn, Set &&set)
{
    auto h = std::make_unique<Holder<std::decay_t<F>>>(std::forward<F>(fn));
    kept.reserve(kept.size() + 1); // the push below cannot throw once the C side holds h
    tf_err e = set(h.get());
    if (e != TF_OK)
        return Error(e);
    kept.push_back(std::move(h));
    return {};
}
} // namespace detail

/// A timeout: std::nullopt waits without a limit.
using Timeout = std::optional<std::chrono::milliseconds>;

// ------------------------------------------------------------------------------------ buffers

/// A received message in a malloc()'d buffer of its exact length (empty: no allocation).
class Buffer
{
  public:
    Buffer() noexcept = default;
    /// Adopt |p| (malloc()'d, or NULL for an empty message) of |n| bytes.
    Buffer(void *p, size_t n) noexcept : p_(static_cast<uint8_t *>(p)), n_(p != nullptr ? n : 0) {}

    uint8_t *data() noexcept
    {
        return p_.get();
    }
    const uint8_t *data() const noexcept
    {
        return p_.get();
    }
    size_t size() const noexcept
    {
        return n_;
    }
    bool empty() const noexcept
    {
        return n_ == 0;
    }
    std::span<uint8_t> span() noexcept
    {
        return {p_.get(), n_};
    }
    std::span<const uint8_t> span() const noexcept
    {
        return {p_.get(), n_};
    }
    std::vector<uint8_t> to_vector() const
    {
        return {p_.get(), p_.get() + n_};
    }
    /// Hand the buffer over (free() it); the Buffer is empty afterwards.
    uint8_t *release() noexcept
    {
        n_ = 0;
        return p_.release();
    }

  private:
    struct Free {
        void operator()(uint8_t *p) const noexcept
        {
            std::free(p);
        }
    };
    std::unique_ptr<uint8_t, Free> p_;
    size_t n_ = 0;
};

// ------------------------------------------------------------------------------------ config

/// The socket configuration (tcp.h's tf_tcp_config) with tf_tcp_config_init's defaults.
/// std::nullopt leaves a socket option to the OS, a timeout without a limit, a retry count at
/// "no retry" and a queue without a bound (TF_UNSET).
struct Config {
    using ms = std::chrono::milliseconds;
    using sec = std::chrono::seconds;

    std::optional<ms> connect_timeout{ms{30000}};
    std::optional<int64_t> sndbuf{int64_t{1} << 20};
    std::optional<int64_t> rcvbuf{int64_t{1} << 20};
    std::optional<bool> nodelay{true};
    std::optional<bool> keepalive{true};
    std::optional<sec> keepalive_idle{sec{60}};
    std::optional<sec> keepalive_intvl{sec{5}};
    std::optional<int64_t> keepalive_cnt{3};
    std::optional<ms> user_timeout{ms{60000}};
    std::optional<int64_t> listen_backlog{}; // SOMAXCONN
    std::optional<int64_t> accept_retries{5};
    std::optional<int64_t> connect_retries{10};
    std::optional<ms> retry_delay{ms{1000}};
    std::optional<ms> retry_max_delay{ms{30000}};
    std::optional<ms> handshake_timeout{ms{5000}};
    uint32_t max_recv_len = 64u << 20;
    uint32_t max_send_len = 64u << 20;
    bool handshake = true;
    std::optional<int64_t> send_queue_bytes{(int64_t{64} << 20) + (int64_t{1} << 20)};
    std::optional<int64_t> send_queue_msgs{65536};
    int64_t send_low_water = 256 * 1024;
    std::optional<int64_t> recv_queue_ops{65536};
    int64_t read_buffer = 65536;
    std::optional<ms> linger{ms{5000}};
    std::optional<int64_t> accept_queue{128};
    // socket-level control (SPEC 9.4)
    std::optional<int64_t> ip_tos{};   // IP_TOS / IPV6_TCLASS
    std::optional<int64_t> priority{}; // SO_PRIORITY
    std::string bind_device;           // SO_BINDTODEVICE; "" none (at most TF_IFNAME_LEN - 1)
    std::string local_addr;            // clients: numeric "host:port" to bind before connect
    tf_sock_cb sock_cb = nullptr;      // called with each new socket before bind / connect
    void *sock_cb_arg = nullptr;
    // hostile peers (SPEC 9.7), async only
    std::optional<int64_t> recv_mem_budget{};
    std::optional<ms> idle_timeout{};
    std::optional<ms> progress_timeout{};
    std::optional<int64_t> max_conns{};
    int64_t io_budget = int64_t{1} << 20;

    /// tf_tcp_config_init_os: every socket option, timeout and retry left to the OS.
    static Config os_defaults()
    {
        return from_c(c_os_defaults());
    }

    /// The C struct (tf_tcp_config_init, then every field of this one).
    tf_tcp_config to_c() const noexcept
    {
        tf_tcp_config c;
        tf_tcp_config_init(&c);
        auto i = [](const auto &o) -> int64_t { return o ? static_cast<int64_t>(*o) : TF_UNSET; };
        auto d = [](const auto &o) -> int64_t {
            return o ? static_cast<int64_t>(o->count()) : TF_UNSET;
        };
        auto b = [](const std::optional<bool> &o) -> int { return o ? (*o ? 1 : 0) : TF_UNSET; };
        c.connect_timeout_ms = d(connect_timeout);
        c.sndbuf = i(sndbuf);
        c.rcvbuf = i(rcvbuf);
        c.nodelay = b(nodelay);
        c.keepalive = b(keepalive);
        c.keepalive_idle_s = d(keepalive_idle);
        c.keepalive_intvl_s = d(keepalive_intvl);
        c.keepalive_cnt = i(keepalive_cnt);
        c.user_timeout_ms = d(user_timeout);
        c.listen_backlog = i(listen_backlog);
        c.accept_retries = i(accept_retries);
        c.connect_retries = i(connect_retries);
        c.retry_delay_ms = d(retry_delay);
        c.retry_max_delay_ms = d(retry_max_delay);
        c.handshake_timeout_ms = d(handshake_timeout);
        c.max_recv_len = max_recv_len;
        c.max_send_len = max_send_len;
        c.handshake = handshake ? 1 : 0;
        c.send_queue_bytes = i(send_queue_bytes);
        c.send_queue_msgs = i(send_queue_msgs);
        c.send_low_water = send_low_water;
        c.recv_queue_ops = i(recv_queue_ops);
        c.read_buffer = read_buffer;
        c.linger_ms = d(linger);
        c.accept_queue = i(accept_queue);
        c.ip_tos = i(ip_tos);
        c.priority = i(priority);
        // Too long a name leaves no NUL: tf_tcp_config_validate (every call) refuses it.
        std::memset(c.bind_device, 0, sizeof c.bind_device);
        std::memcpy(c.bind_device, bind_device.data(),
                    std::min(bind_device.size(), sizeof c.bind_device));
        std::memset(c.local_addr, 0, sizeof c.local_addr);
        std::memcpy(c.local_addr, local_addr.data(),
                    std::min(local_addr.size(), sizeof c.local_addr));
        c.sock_cb = sock_cb;
        c.sock_cb_arg = sock_cb_arg;
        c.recv_mem_budget = i(recv_mem_budget);
        c.idle_timeout_ms = d(idle_timeout);
        c.progress_timeout_ms = d(progress_timeout);
        c.max_conns = i(max_conns);
        c.io_budget = io_budget;
        return c;
    }

    /// The same configuration from a C struct (TF_UNSET becomes std::nullopt).
    static Config from_c(const tf_tcp_config &c)
    {
        auto i = [](int64_t v) {
            return v == TF_UNSET ? std::optional<int64_t>{} : std::optional<int64_t>{v};
        };
        auto m = [](int64_t v) {
            return v == TF_UNSET ? std::optional<ms>{} : std::optional<ms>{ms{v}};
        };
        auto s = [](int64_t v) {
            return v == TF_UNSET ? std::optional<sec>{} : std::optional<sec>{sec{v}};
        };
        auto b = [](int v) {
            return v == TF_UNSET ? std::optional<bool>{} : std::optional<bool>{v != 0};
        };
        Config r;
        r.connect_timeout = m(c.connect_timeout_ms);
        r.sndbuf = i(c.sndbuf);
        r.rcvbuf = i(c.rcvbuf);
        r.nodelay = b(c.nodelay);
        r.keepalive = b(c.keepalive);
        r.keepalive_idle = s(c.keepalive_idle_s);
        r.keepalive_intvl = s(c.keepalive_intvl_s);
        r.keepalive_cnt = i(c.keepalive_cnt);
        r.user_timeout = m(c.user_timeout_ms);
        r.listen_backlog = i(c.listen_backlog);
        r.accept_retries = i(c.accept_retries);
        r.connect_retries = i(c.connect_retries);
        r.retry_delay = m(c.retry_delay_ms);
        r.retry_max_delay = m(c.retry_max_delay_ms);
        r.handshake_timeout = m(c.handshake_timeout_ms);
        r.max_recv_len = c.max_recv_len;
        r.max_send_len = c.max_send_len;
        r.handshake = c.handshake != 0;
        r.send_queue_bytes = i(c.send_queue_bytes);
        r.send_queue_msgs = i(c.send_queue_msgs);
        r.send_low_water = c.send_low_water;
        r.recv_queue_ops = i(c.recv_queue_ops);
        r.read_buffer = c.read_buffer;
        r.linger = m(c.linger_ms);
        r.accept_queue = i(c.accept_queue);
        r.ip_tos = i(c.ip_tos);
        r.priority = i(c.priority);
        r.bind_device.assign(c.bind_device, strnlen(c.bind_device, sizeof c.bind_device));
        r.local_addr.assign(c.local_addr, strnlen(c.local_addr, sizeof c.local_addr));
        r.sock_cb = c.sock_cb;
        r.sock_cb_arg = c.sock_cb_arg;
        r.recv_mem_budget = i(c.recv_mem_budget);
        r.idle_timeout = m(c.idle_timeout_ms);
        r.progress_timeout = m(c.progress_timeout_ms);
        r.max_conns = i(c.max_conns);
        r.io_budget = c.io_budget;
        return r;
    }

    /// tf_tcp_config_validate: INVALID_ARGUMENT with a message naming the first bad field.
    Result<void> validate() const
    {
        tf_tcp_config c = to_c();
        tf_errmsg m{};
        return detail::status(tf_tcp_config_validate(&c, &m), m);
    }

  private:
    static tf_tcp_config c_os_defaults() noexcept
    {
        tf_tcp_config c;
        tf_tcp_config_init_os(&c);
        return c;
    }
};

// ------------------------------------------------------------------------------------ loop

/// An event loop (tf_evb). Move-only; the destructor stops it (draining queued work) and frees
/// it -- never destroy a Loop on its own thread, nor while objects created on it are alive.
class Loop
{
  public:
    /// A new loop in INIT state.
    static Result<Loop> create()
    {
        tf_evb *e = nullptr;
        tf_err r = tf_evb_new(&e);
        if (r != TF_OK)
            return Error(r, errno);
        return Loop(e);
    }
    /// Adopt |evb| (may be NULL).
    explicit Loop(tf_evb *evb) noexcept : evb_(evb) {}
    Loop(Loop &&o) noexcept : evb_(std::exchange(o.evb_, nullptr)) {}
    Loop &operator=(Loop &&o) noexcept
    {
        if (this != &o) {
            reset();
            evb_ = std::exchange(o.evb_, nullptr);
        }
        return *this;
    }
    Loop(const Loop &) = delete;
    Loop &operator=(const Loop &) = delete;
    ~Loop()
    {
        reset();
    }

    /// Run the loop on a thread the library owns (tf_evb_start).
    Result<void> start() noexcept
    {
        return detail::status(tf_evb_start(evb_));
    }
    /// Run the loop on this thread until stop() (tf_evb_loop).
    Result<void> run() noexcept
    {
        return detail::status(tf_evb_loop(evb_));
    }
    /// Stop and drain (tf_evb_stop); from another thread, returns once the loop has stopped.
    void stop() noexcept
    {
        (void)tf_evb_stop(evb_);
    }
    bool running() const noexcept
    {
        return tf_evb_is_running(evb_);
    }
    bool in_loop_thread() const noexcept
    {
        return tf_evb_in_loop_thread(evb_);
    }

    /// Queue fn() to run once on the loop thread (one allocation for the callable). SHUTDOWN:
    /// the loop is stopping and fn is destroyed without running.
    template <typename F> Result<void> dispatch(F &&fn)
    {
        using H = detail::Holder<std::decay_t<F>>;
        auto *h = new H(std::forward<F>(fn));
        tf_err r = tf_evb_dispatch(evb_, &run_once<H>, h);
        if (r != TF_OK) {
            delete h;
            return Error(r);
        }
        return {};
    }
    /// Run fn() on the loop thread and wait for it (inline on the loop thread); no allocation.
    template <typename F> Result<void> dispatch_and_wait(F &&fn)
    {
        auto *p = std::addressof(fn);
        return detail::status(
            tf_evb_dispatch_and_wait(evb_, &call_ref<std::remove_reference_t<F>>, p));
    }
    /// Call fn() once on the loop thread after |delay| (fire and forget; one allocation).
    template <typename F> Result<void> after(std::chrono::milliseconds delay, F &&fn)
    {
        using H = detail::Holder<std::decay_t<F>>;
        auto *h = new H(std::forward<F>(fn));
        uint64_t ms = delay.count() < 0 ? 0 : static_cast<uint64_t>(delay.count());
        tf_err r = tf_evb_timer_after(evb_, ms, &timer_once<H>, h, nullptr);
        if (r != TF_OK) {
            delete h;
            return Error(r);
        }
        return {};
    }

    /// Call fn(unsigned ready) on the loop thread while |fd| is ready for |events| (TF_EVB_READ
    /// and/or TF_EVB_WRITE; ready may also carry TF_EVB_ERROR, TF_EVB_HUP), replacing any watch
    /// of it (tf_evb_register_fd). |fn| is borrowed, no allocation: keep it alive and |fd| open
    /// until unwatch(fd) has taken effect (at once on the loop thread; from another thread,
    /// after a following dispatch_and_wait).
    template <typename F> Result<void> watch(int fd, unsigned events, F &fn)
    {
        tf_err e = tf_evb_register_fd(evb_, fd, events, &on_fd<F>, std::addressof(fn));
        return detail::status(e, e == TF_ERR_IO ? errno : 0);
    }
    /// Stop watching |fd| (tf_evb_unregister_fd).
    Result<void> unwatch(int fd) noexcept
    {
        return detail::status(tf_evb_unregister_fd(evb_, fd));
    }

    tf_evb *get() const noexcept
    {
        return evb_;
    }
    tf_evb *release() noexcept
    {
        return std::exchange(evb_, nullptr);
    }

  private:
    void reset() noexcept
    {
        if (evb_ != nullptr)
            (void)tf_evb_free(std::exchange(evb_, nullptr));
    }
    template <typename H> static void run_once(void *arg)
    {
        std::unique_ptr<H> h(static_cast<H *>(arg));
        h->fn();
    }
    template <typename H> static void timer_once(tf_evb *, void *arg)
    {
        run_once<H>(arg);
    }
    template <typename F> static void call_ref(void *arg)
    {
        (*static_cast<F *>(arg))();
    }
    template <typename F> static void on_fd(tf_evb *, int, unsigned ready, void *arg)
    {
        (*static_cast<F *>(arg))(ready);
    }
    tf_evb *evb_ = nullptr;
};

// ------------------------------------------------------------------------------------ futures

template <typename T> class Future;

namespace detail
{
template <typename T> struct Take; // reads a ready tf_future as a Result<T>
template <> struct Take<void> {
    static Result<void> take(tf_future *f)
    {
        tf_err e = tf_future_get(f, nullptr, nullptr);
        return status(e, tf_future_os_err(f));
    }
};
template <> struct Take<size_t> {
    static Result<size_t> take(tf_future *f)
    {
        size_t n = 0;
        tf_err e = tf_future_get(f, &n, nullptr);
        if (e != TF_OK)
            return Error(e, tf_future_os_err(f));
        return n;
    }
};
template <> struct Take<Buffer> {
    static Result<Buffer> take(tf_future *f)
    {
        size_t n = 0;
        void *p = nullptr;
        tf_err e = tf_future_get(f, &n, &p);
        if (e != TF_OK) {
            std::free(p);
            return Error(e, tf_future_os_err(f));
        }
        return Buffer(p, n);
    }
};
} // namespace detail

/// The reading end of one operation's result (tf_future). Move-only. A Future made from a
/// refusal holds the error at once (is_ready() is true, no C object behind it).
template <typename T> class [[nodiscard]] Future
{
  public:
    Future() noexcept = default;
    /// Adopt |f| (its result is read as a Result<T>).
    explicit Future(tf_future *f) noexcept : f_(f) {}
    /// A ready future holding |e|.
    static Future failed(Error e)
    {
        Future r;
        r.early_ = std::move(e);
        return r;
    }
    Future(Future &&o) noexcept : f_(std::exchange(o.f_, nullptr)), early_(std::move(o.early_)) {}
    Future &operator=(Future &&o) noexcept
    {
        if (this != &o) {
            tf_future_free(f_);
            f_ = std::exchange(o.f_, nullptr);
            early_ = std::move(o.early_);
        }
        return *this;
    }
    Future(const Future &) = delete;
    Future &operator=(const Future &) = delete;
    ~Future()
    {
        tf_future_free(f_);
    }

    bool valid() const noexcept
    {
        return f_ != nullptr || early_.has_value();
    }
    bool is_ready() const noexcept
    {
        return early_.has_value() || tf_future_is_ready(f_);
    }

    /// Block until ready (BAD_STATE on a loop thread while not ready).
    Result<void> wait() const
    {
        if (early_)
            return {};
        return detail::status(tf_future_wait(f_));
    }
    /// Block at most |t| (TIMEOUT: not ready yet; nothing consumed).
    Result<void> wait_for(std::chrono::milliseconds t) const
    {
        if (early_)
            return {};
        int64_t ms = detail::to_ms(t);
        return detail::status(tf_future_wait_for(f_, static_cast<uint32_t>(ms)));
    }
    /// Wait, then read the result. An owned result (Buffer, AsyncConn) is handed over once.
    Result<T> get()
    {
        if (early_)
            return *early_;
        if (f_ == nullptr)
            return Error(TF_ERR_INVALID_ARGUMENT);
        return detail::Take<T>::take(f_);
    }
    /// Call fn(Result<T>) once when the result is there: at once if it is, else on the thread
    /// that completes it (the loop thread for async operations). Consumes the future; one
    /// allocation for the callable. fn must not block.
    template <typename F> Result<void> then(F &&fn) &&
    {
        if (early_) {
            Result<T> r(std::move(*early_));
            early_.reset();
            fn(std::move(r));
            return {};
        }
        if (f_ == nullptr)
            return Error(TF_ERR_INVALID_ARGUMENT);
        using H = detail::Holder<std::decay_t<F>>;
        auto *h = new H(std::forward<F>(fn));
        tf_future *f = std::exchange(f_, nullptr);
        tf_err e = tf_future_then(f, &on_ready<H>, h);
        if (e != TF_OK) {
            f_ = f;
            delete h;
            return Error(e);
        }
        return {};
    }

    tf_future *get_c() const noexcept
    {
        return f_;
    }
    tf_future *release() noexcept
    {
        return std::exchange(f_, nullptr);
    }

  private:
    template <typename H> static void on_ready(tf_future *f, void *arg)
    {
        std::unique_ptr<H> h(static_cast<H *>(arg));
        Result<T> r = detail::Take<T>::take(f);
        tf_future_free(f);
        h->fn(std::move(r));
    }
    tf_future *f_ = nullptr;
    std::optional<Error> early_;
};

// ----------------------------------------------------------------------------------- observability

/// The name of a connection event ("connected", "handshake-failed", "closed"; "?" for another
/// value).
inline const char *event_name(tf_conn_event ev) noexcept
{
    return tf_conn_event_name(ev);
}

/// A connection event of an async server's or client's connection (on_event), on the loop
/// thread. |conn| may be read during the call (stats(), tf_async_conn_peer, its error) but not
/// freed there nor given operations.
struct AsyncEvent {
    tf_async_conn *conn = nullptr;
    tf_conn_event event = TF_CONN_CONNECTED;
    Error error; // code TF_OK for CONNECTED
    /// The connection's statistics now (tf_async_conn_stats).
    Result<tf_conn_stats> stats() const noexcept
    {
        tf_conn_stats s{};
        s.size = sizeof s;
        tf_err e = tf_async_conn_stats(conn, &s);
        if (e != TF_OK)
            return Error(e);
        return s;
    }
};

/// A connection event of a sync server's client (SyncServer::on_event). |conn| is NULL for
/// HANDSHAKE_FAILED; else it may be read during the call (stats(), its peer, its error) but not
/// freed there. |peer| is the client's address, valid during the call.
struct SyncEvent {
    tf_sync_conn *conn = nullptr;
    std::string_view peer;
    tf_conn_event event = TF_CONN_CONNECTED;
    Error error; // code TF_OK for CONNECTED
    /// The connection's statistics now (tf_sync_conn_stats; INVALID_ARGUMENT without conn).
    Result<tf_conn_stats> stats() const noexcept
    {
        tf_conn_stats s{};
        s.size = sizeof s;
        tf_err e = tf_sync_conn_stats(conn, &s);
        if (e != TF_OK)
            return Error(e);
        return s;
    }
};

namespace detail
{
/// Log callables set by set_log: a list that is only ever pushed to, never freed (the C hook
/// may still call a replaced one for a message under way, with no point known after which it
/// does not). Reachable from here, so leak checkers do not report it.
struct LogNode {
    virtual ~LogNode() = default;
    LogNode *next = nullptr;
};
template <typename F> struct LogHolder final : LogNode {
    template <typename G> explicit LogHolder(G &&g) : fn(std::forward<G>(g)) {}
    F fn;
};
inline std::atomic<LogNode *> log_nodes{nullptr};
template <typename H>
void log_line(tf_log_level level, const char *subsystem, const char *message, void *arg)
{
    static_cast<H *>(arg)->fn(level, std::string_view(subsystem != nullptr ? subsystem : ""),
                              std::string_view(message != nullptr ? message : ""));
}
/// A server's statistics: |fn| (tf_async_server_stats, tf_sync_server_stats) on |s|.
template <typename S>
Result<tf_server_stats> server_stats(tf_err (*fn)(const S *, tf_server_stats *),
                                     const S *s) noexcept
{
    tf_server_stats st{};
    st.size = sizeof st;
    tf_err e = fn(s, &st);
    if (e != TF_OK)
        return Error(e);
    return st;
}
} // namespace detail

/// The library's log hook (tf_set_log): fn(tf_log_level, std::string_view subsystem,
/// std::string_view message) gets one line for each message of |level| or a more severe one
/// (rejected clients, accept back-offs, connections dropped by a timeout: obs.h). It is called
/// on the thread that saw the event, often a loop thread, possibly on several threads at once:
/// it must be thread-safe, short, never block, and must not free, shut down, close or abort
/// library objects; the views are valid during the call only. set_log and clear_log may be
/// called from any thread at any time; a message under way while the hook changes may still
/// reach the previous callable, later ones go to the new one. Every callable given here is kept
/// alive (one allocation each) until the process exits, never destroyed: set the hook once or
/// rarely. INVALID_ARGUMENT: level is not a tf_log_level (nothing changed).
template <typename F> Result<void> set_log(F &&fn, tf_log_level level = TF_LOG_WARN)
{
    using H = detail::LogHolder<std::decay_t<F>>;
    auto *h = new H(std::forward<F>(fn));
    tf_err e = tf_set_log(&detail::log_line<H>, h, level);
    if (e != TF_OK) {
        delete h; // nothing changed: the library never saw h
        return Error(e);
    }
    detail::LogNode *head = detail::log_nodes.load(std::memory_order_relaxed);
    do
        h->next = head;
    while (!detail::log_nodes.compare_exchange_weak(head, h, std::memory_order_release,
                                                    std::memory_order_relaxed));
    return {};
}
/// Switch the log hook off (the default); the callables set before stay alive (set_log).
inline Result<void> clear_log() noexcept
{
    return detail::status(tf_set_log(nullptr, nullptr, TF_LOG_OFF));
}

// ------------------------------------------------------------------------------------ sync

/// A blocking connection (tf_sync_conn). One sending and one receiving thread at a time.
class SyncConn
{
  public:
    SyncConn() noexcept = default;
    explicit SyncConn(tf_sync_conn *c) noexcept : c_(c) {}
    SyncConn(SyncConn &&o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
    SyncConn &operator=(SyncConn &&o) noexcept
    {
        if (this != &o) {
            tf_sync_conn_free(c_);
            c_ = std::exchange(o.c_, nullptr);
        }
        return *this;
    }
    SyncConn(const SyncConn &) = delete;
    SyncConn &operator=(const SyncConn &) = delete;
    ~SyncConn()
    {
        tf_sync_conn_free(c_);
    }

    /// Connect to "host:port" (retries, back-off and handshake as tf_sync_connect).
    static Result<SyncConn> connect(const std::string &addr, const Config &cfg = {})
    {
        tf_tcp_config c = cfg.to_c();
        tf_sync_conn *out = nullptr;
        int os = 0;
        tf_errmsg m{};
        tf_err e = tf_sync_connect(addr.c_str(), &c, &out, &os, &m);
        if (e != TF_OK)
            return std::move(detail::status(e, m, os)).error();
        return SyncConn(out);
    }
    /// Take over a connected socket (closed on failure too), handshake as cfg says.
    static Result<SyncConn> from_fd(int fd, const Config &cfg = {})
    {
        tf_tcp_config c = cfg.to_c();
        tf_sync_conn *out = nullptr;
        int os = 0;
        tf_errmsg m{};
        tf_err e = tf_sync_conn_from_fd(fd, &c, &out, &os, &m);
        if (e != TF_OK)
            return std::move(detail::status(e, m, os)).error();
        return SyncConn(out);
    }

    /// Send one message (tf_sync_conn_send).
    Result<void> send(std::span<const uint8_t> msg, Timeout t = {}) noexcept
    {
        return st(tf_sync_conn_send(c_, msg.data(), msg.size(), ms(t)));
    }
    Result<void> send(std::span<const std::byte> msg, Timeout t = {}) noexcept
    {
        return st(tf_sync_conn_send(c_, msg.data(), msg.size(), ms(t)));
    }
    /// Send several messages in order, each its own frame, in gathered writes of up to 256
    /// (tf_sync_conn_sendv): one deadline for the batch; TOO_LARGE (some message over
    /// max_send_len) sends nothing; a TIMEOUT after some bytes poisons (the peer may have
    /// received the first messages whole). The messages are borrowed for the call.
    Result<void> sendv(std::span<const tf_iov> msgs, Timeout t = {}) noexcept
    {
        return st(tf_sync_conn_sendv(c_, msgs.data(), msgs.size(), ms(t)));
    }
    Result<void> sendv(std::span<const std::span<const uint8_t>> msgs, Timeout t = {}) noexcept
    {
        return sendv_of(msgs, t);
    }
    Result<void> sendv(std::span<const std::span<const std::byte>> msgs, Timeout t = {}) noexcept
    {
        return sendv_of(msgs, t);
    }
    /// Receive one message into |buf|; its length (BUFFER_TOO_SMALL poisons).
    Result<size_t> recv(std::span<uint8_t> buf, Timeout t = {}) noexcept
    {
        size_t n = 0;
        tf_err e = tf_sync_conn_recv(c_, buf.data(), buf.size(), &n, ms(t));
        if (e != TF_OK)
            return err(e);
        return n;
    }
    Result<size_t> recv(std::span<std::byte> buf, Timeout t = {}) noexcept
    {
        return recv(std::span<uint8_t>(reinterpret_cast<uint8_t *>(buf.data()), buf.size()), t);
    }
    /// Receive one message into a buffer of its exact length.
    Result<Buffer> recv_alloc(Timeout t = {}) noexcept
    {
        void *p = nullptr;
        size_t n = 0;
        tf_err e = tf_sync_conn_recv_alloc(c_, &p, &n, ms(t));
        if (e != TF_OK)
            return err(e);
        return Buffer(p, n);
    }
    /// Receive one message as a vector (one copy from the exact-length buffer).
    Result<std::vector<uint8_t>> recv_vector(Timeout t = {})
    {
        auto b = recv_alloc(t);
        if (!b)
            return std::move(b).error();
        return b->to_vector();
    }
    /// Half-close: shut our sending side down.
    Result<void> shutdown() noexcept
    {
        return st(tf_sync_conn_shutdown(c_));
    }
    /// The poison reason (code TF_OK while healthy).
    Error error() const
    {
        int os = 0;
        tf_err e = tf_sync_conn_error(c_, &os);
        return Error(e, os);
    }
    /// A snapshot of the statistics (tf_sync_conn_stats; any thread, also while a send and a
    /// receive block on others): the C struct, size set to sizeof(tf_conn_stats).
    Result<tf_conn_stats> stats() const noexcept
    {
        tf_conn_stats s{};
        s.size = sizeof s;
        tf_err e = tf_sync_conn_stats(c_, &s);
        if (e != TF_OK)
            return Error(e);
        return s;
    }
    int fd() const noexcept
    {
        return tf_sync_conn_fd(c_);
    }
    Result<std::string> peer() const
    {
        char b[TF_ADDRSTR_LEN];
        tf_err e = tf_sync_conn_peer(c_, b, sizeof b);
        if (e != TF_OK)
            return Error(e);
        return std::string(b);
    }
    explicit operator bool() const noexcept
    {
        return c_ != nullptr;
    }
    tf_sync_conn *get() const noexcept
    {
        return c_;
    }
    tf_sync_conn *release() noexcept
    {
        return std::exchange(c_, nullptr);
    }

  private:
    static int ms(Timeout t) noexcept
    {
        return static_cast<int>(detail::to_ms(t));
    }
    /// tf_iov for |msgs|: on the stack up to 64 messages, else one nothrow allocation.
    template <typename B>
    Result<void> sendv_of(std::span<const std::span<const B>> msgs, Timeout t) noexcept
    {
        constexpr size_t kStack = 64;
        tf_iov stack[kStack];
        std::unique_ptr<tf_iov[]> heap;
        tf_iov *v = stack;
        if (msgs.size() > kStack) {
            heap.reset(new (std::nothrow) tf_iov[msgs.size()]);
            if (!heap)
                return Error(TF_ERR_NOMEM);
            v = heap.get();
        }
        for (size_t i = 0; i < msgs.size(); i++) {
            v[i].base = reinterpret_cast<const uint8_t *>(msgs[i].data());
            v[i].len = msgs[i].size();
        }
        return sendv(std::span<const tf_iov>(v, msgs.size()), t);
    }
    Error err(tf_err e) const noexcept
    {
        int os = 0;
        (void)tf_sync_conn_error(c_, &os);
        return Error(e, os);
    }
    Result<void> st(tf_err e) const noexcept
    {
        if (e == TF_OK)
            return {};
        return err(e);
    }
    tf_sync_conn *c_ = nullptr;
};

/// A blocking server (tf_sync_server). accept() may run on several threads; shutdown() from
/// any thread makes them return SHUTDOWN. Destroy it only once no accept() runs.
class SyncServer
{
  public:
    SyncServer() noexcept = default;
    SyncServer(SyncServer &&o) noexcept
        : s_(std::exchange(o.s_, nullptr)), reject_(std::move(o.reject_)),
          events_(std::move(o.events_))
    {
    }
    SyncServer &operator=(SyncServer &&o) noexcept
    {
        if (this != &o) {
            tf_sync_server_free(s_);
            s_ = std::exchange(o.s_, nullptr);
            reject_ = std::move(o.reject_);
            events_ = std::move(o.events_);
        }
        return *this;
    }
    SyncServer(const SyncServer &) = delete;
    SyncServer &operator=(const SyncServer &) = delete;
    ~SyncServer()
    {
        tf_sync_server_free(s_);
    }

    /// Bind |addr| ("host:port", port 0 picks one) and listen.
    static Result<SyncServer> listen(const std::string &addr, const Config &cfg = {})
    {
        SyncServer s;
        tf_err e = tf_sync_server_new(&s.s_);
        if (e != TF_OK)
            return Error(e);
        tf_tcp_config c = cfg.to_c();
        tf_errmsg m{};
        e = tf_sync_server_init(s.s_, addr.c_str(), &c, &m);
        if (e != TF_OK)
            return std::move(detail::status(e, m, errno)).error();
        return s;
    }
    /// Serve on |fd|, already bound and listening (inherited, socket activation); the server
    /// owns fd from this call on, also when it fails (tf_sync_server_init_fd).
    static Result<SyncServer> adopt(int fd, const Config &cfg = {})
    {
        SyncServer s;
        tf_err e = tf_sync_server_new(&s.s_);
        if (e != TF_OK) {
            ::close(fd);
            return Error(e);
        }
        tf_tcp_config c = cfg.to_c();
        tf_errmsg m{};
        e = tf_sync_server_init_fd(s.s_, fd, &c, &m);
        if (e != TF_OK)
            return std::move(detail::status(e, m, errno)).error();
        return s;
    }
    /// fn(std::string_view peer, const Error &why) for every client dropped in the handshake,
    /// on the accepting thread. Set it before accepting.
    template <typename F> void on_reject(F &&fn)
    {
        using H = detail::Holder<std::decay_t<F>>;
        auto h = std::make_unique<H>(std::forward<F>(fn));
        tf_sync_server_on_reject(s_, &rejected_cb<H>, h.get());
        reject_ = std::move(h);
    }
    /// fn(const SyncEvent &) for the connection events of the server's clients
    /// (tf_sync_server_on_event): CONNECTED on the accepting thread just before accept()
    /// returns the connection, HANDSHAKE_FAILED on the accepting thread before on_reject's
    /// callable, CLOSED when a SyncConn the server handed out is destroyed, on that thread.
    /// Events are told one at a time under a lock of the server's (the callable may destroy
    /// connections; other threads' events wait). A replaced callable is kept (one allocation
    /// each) until the server is destroyed, so an event may safely still be in it; none runs
    /// after the server's destruction. Calls of on_event must not overlap (one thread at a
    /// time, which may be inside the callable).
    template <typename F> Result<void> on_event(F &&fn)
    {
        return detail::keep_callable(events_, std::forward<F>(fn), [this](auto *h) {
            return tf_sync_server_on_event(s_, &event_cb<std::remove_pointer_t<decltype(h)>>, h);
        });
    }
    /// Remove the event callable (it is kept until the server is destroyed).
    Result<void> on_event(std::nullptr_t) noexcept
    {
        return detail::status(tf_sync_server_on_event(s_, nullptr, nullptr));
    }
    /// A snapshot of the statistics (tf_sync_server_stats; any thread).
    Result<tf_server_stats> stats() const noexcept
    {
        return detail::server_stats(&tf_sync_server_stats, s_);
    }
    /// Block until a handshaken client arrives (SHUTDOWN after shutdown()).
    Result<SyncConn> accept()
    {
        tf_sync_conn *c = nullptr;
        int os = 0;
        tf_errmsg m{};
        tf_err e = tf_sync_server_accept(s_, &c, &os, &m);
        if (e != TF_OK)
            return std::move(detail::status(e, m, os)).error();
        return SyncConn(c);
    }
    /// Any thread, idempotent.
    Result<void> shutdown() noexcept
    {
        return detail::status(tf_sync_server_shutdown(s_));
    }
    Result<std::string> addr() const
    {
        char b[TF_ADDRSTR_LEN];
        tf_err e = tf_sync_server_addr(s_, b, sizeof b);
        if (e != TF_OK)
            return Error(e);
        return std::string(b);
    }
    uint16_t port() const
    {
        auto a = addr();
        return a ? detail::port_of(*a) : 0;
    }
    uint64_t rejected() const noexcept
    {
        return tf_sync_server_rejected(s_);
    }
    tf_sync_server *get() const noexcept
    {
        return s_;
    }

  private:
    template <typename H> static void rejected_cb(void *arg, const char *peer, tf_err e, int os)
    {
        static_cast<H *>(arg)->fn(std::string_view(peer != nullptr ? peer : ""), Error(e, os));
    }
    template <typename H>
    static void event_cb(tf_sync_conn *c, const char *peer, tf_conn_event ev, tf_err e, int os,
                         void *arg)
    {
        static_cast<H *>(arg)->fn(
            SyncEvent{c, std::string_view(peer != nullptr ? peer : ""), ev, Error(e, os)});
    }
    tf_sync_server *s_ = nullptr;
    std::unique_ptr<detail::HolderBase> reject_;
    std::vector<std::unique_ptr<detail::HolderBase>> events_; // the last one is current
};

// ------------------------------------------------------------------------------------ async

/// What a callback-style operation (Op) reports: error.code TF_OK on success; data is the sent
/// payload or the received message (the caller's span; for an allocating receive, the bytes
/// owned by |buffer|, which is the callback's to keep or drop).
struct Completion {
    Error error;
    std::span<uint8_t> data;
    Buffer buffer;
    bool ok() const noexcept
    {
        return error.code == TF_OK;
    }
};

class AsyncConn;

/// The record of one callback-style operation and its callable: fn(Completion &) runs once on
/// the loop thread. Allocates nothing; keep the Op alive and in place from submission until
/// its callback has started (the callback may submit the next operation with the same Op).
template <typename F> class Op
{
  public:
    explicit Op(F fn) : fn_(std::move(fn)) {}
    Op(const Op &) = delete;
    Op &operator=(const Op &) = delete;

  private:
    friend class AsyncConn;
    static void done(tf_async_conn *, tf_async_op *, tf_err e, int os, uint8_t *data, size_t len,
                     void *arg)
    {
        auto *self = static_cast<Op *>(arg);
        Completion c;
        if (e != TF_OK)
            c.error = Error(e, os);
        c.data = std::span<uint8_t>(data, data != nullptr ? len : 0);
        if (self->alloc_)
            c.buffer = Buffer(data, len);
        self->fn_(c);
    }
    tf_async_op op_{};
    bool alloc_ = false;
    F fn_;
};

/// A connection on a loop (tf_async_conn). Any thread may call it; callbacks run on the loop
/// thread. Destroying it (any thread, also inside its own callbacks) completes every pending
/// operation (futures and Ops with CANCELLED) -- see async.h's Lifetime.
class AsyncConn
{
  public:
    AsyncConn() noexcept = default;
    explicit AsyncConn(tf_async_conn *c) : c_(c), bin_(c != nullptr ? new Bin : nullptr) {}
    AsyncConn(AsyncConn &&o) noexcept
        : c_(std::exchange(o.c_, nullptr)), bin_(std::exchange(o.bin_, nullptr))
    {
    }
    AsyncConn &operator=(AsyncConn &&o) noexcept
    {
        if (this != &o) {
            reset();
            c_ = std::exchange(o.c_, nullptr);
            bin_ = std::exchange(o.bin_, nullptr);
        }
        return *this;
    }
    AsyncConn(const AsyncConn &) = delete;
    AsyncConn &operator=(const AsyncConn &) = delete;
    ~AsyncConn()
    {
        reset();
    }

    /// Take over a connected socket on |evb| (handshake on the loop as cfg says; operations
    /// queue behind it). On failure the fd stays the caller's.
    static Result<AsyncConn> from_fd(tf_evb *evb, int fd, const Config &cfg = {})
    {
        tf_tcp_config c = cfg.to_c();
        tf_async_conn *out = nullptr;
        tf_errmsg m{};
        tf_err e = tf_async_conn_from_fd(evb, fd, &c, &out, &m);
        if (e != TF_OK)
            return std::move(detail::status(e, m)).error();
        return AsyncConn(out);
    }
    static Result<AsyncConn> from_fd(Loop &loop, int fd, const Config &cfg = {})
    {
        return from_fd(loop.get(), fd, cfg);
    }

    /// Send |msg| (borrowed until the future is ready); the future gives its length.
    Future<size_t> send(std::span<const uint8_t> msg, Timeout t = {})
    {
        tf_future *f = nullptr;
        tf_err e = tf_async_conn_send(c_, msg.data(), msg.size(), detail::to_ms(t), &f);
        return fut<size_t>(e, f);
    }
    Future<size_t> send(std::span<const std::byte> msg, Timeout t = {})
    {
        return send(
            std::span<const uint8_t>(reinterpret_cast<const uint8_t *>(msg.data()), msg.size()), t);
    }
    /// Send an owned buffer: the library frees it (delete[]) when done, also on a refusal.
    Future<size_t> send(std::unique_ptr<uint8_t[]> buf, size_t len, Timeout t = {})
    {
        tf_future *f = nullptr;
        uint8_t *p = buf.release();
        tf_err e = tf_async_conn_send_owned(c_, p, len, &delete_array, detail::to_ms(t), &f);
        if (e != TF_OK)
            delete[] p;
        return fut<size_t>(e, f);
    }
    /// Send a vector moved in (kept alive by the operation until it is done).
    Future<size_t> send(std::vector<uint8_t> &&msg, Timeout t = {})
    {
        auto *h = new OwnedSend{{}, std::move(msg), nullptr};
        tf_future *f = nullptr;
        tf_err e = tf_promise_new(&h->promise, &f);
        if (e != TF_OK) {
            delete h;
            return Future<size_t>::failed(Error(e));
        }
        e = tf_async_conn_send_op(c_, &h->op, h->bytes.data(), h->bytes.size(), detail::to_ms(t),
                                  &owned_sent, h);
        if (e != TF_OK) {
            tf_future_free(f);
            tf_promise_free(h->promise);
            delete h;
            return Future<size_t>::failed(err(e));
        }
        return Future<size_t>(f);
    }
    /// Receive one message into |buf| (borrowed until ready); the future gives its length.
    Future<size_t> recv(std::span<uint8_t> buf, Timeout t = {})
    {
        tf_future *f = nullptr;
        tf_err e = tf_async_conn_recv(c_, buf.data(), buf.size(), detail::to_ms(t), &f);
        return fut<size_t>(e, f);
    }
    /// Receive one message into a buffer of its exact length.
    Future<Buffer> recv(Timeout t = {})
    {
        tf_future *f = nullptr;
        tf_err e = tf_async_conn_recv_alloc(c_, detail::to_ms(t), &f);
        return fut<Buffer>(e, f);
    }

    /// Callback style, no allocation: send |msg| (borrowed until op's callback).
    template <typename F> Result<void> send(Op<F> &op, std::span<const uint8_t> msg, Timeout t = {})
    {
        op.alloc_ = false;
        return st(tf_async_conn_send_op(c_, &op.op_, msg.data(), msg.size(), detail::to_ms(t),
                                        &Op<F>::done, &op));
    }
    /// Callback style: receive into |buf| (borrowed until op's callback).
    template <typename F> Result<void> recv(Op<F> &op, std::span<uint8_t> buf, Timeout t = {})
    {
        op.alloc_ = false;
        return st(tf_async_conn_recv_op(c_, &op.op_, buf.data(), buf.size(), detail::to_ms(t),
                                        &Op<F>::done, &op));
    }
    /// Callback style: receive into an exact-length buffer (Completion::buffer owns it).
    template <typename F> Result<void> recv(Op<F> &op, Timeout t = {})
    {
        op.alloc_ = true;
        return st(tf_async_conn_recv_alloc_op(c_, &op.op_, detail::to_ms(t), &Op<F>::done, &op));
    }

    /// Message-stream mode: fn(Result<std::span<const uint8_t>>) for every message (a view valid
    /// during the call), then once with the error that ended the stream. The callable is stored
    /// with the connection (one allocation per call of stream()).
    template <typename F> Result<void> stream(F &&fn)
    {
        using H = detail::Holder<std::decay_t<F>>;
        auto *h = new H(std::forward<F>(fn));
        tf_err e = tf_async_conn_stream(c_, &on_msg<H>, h);
        if (e != TF_OK) {
            delete h;
            return err(e);
        }
        bin_->keep.emplace_back(h);
        return {};
    }
    /// Leave message-stream mode (no end call; unread data stays in the socket).
    Result<void> stop_stream()
    {
        return st(tf_async_conn_stream(c_, nullptr, nullptr));
    }
    /// fn() when the send queue has drained to send_low_water after a BUSY refusal.
    template <typename F> Result<void> on_writable(F &&fn)
    {
        using H = detail::Holder<std::decay_t<F>>;
        auto *h = new H(std::forward<F>(fn));
        tf_err e = tf_async_conn_on_writable(c_, &writable<H>, h);
        if (e != TF_OK) {
            delete h;
            return err(e);
        }
        bin_->keep.emplace_back(h);
        return {};
    }

    /// fn(const Error &why) once when the connection is over (failed, aborted, closed, loop
    /// stopped) -- never for the peer's half-close, never after destruction (tf_async_conn_on_end).
    template <typename F> Result<void> on_end(F &&fn)
    {
        using H = detail::Holder<std::decay_t<F>>;
        auto *h = new H(std::forward<F>(fn));
        tf_err e = tf_async_conn_on_end(c_, &ended<H>, h);
        if (e != TF_OK) {
            delete h;
            return err(e);
        }
        bin_->keep.emplace_back(h);
        return {};
    }

    /// Graceful close (flush, FIN, linger for the peer's close). Still destroy the AsyncConn.
    Future<void> close()
    {
        tf_future *f = nullptr;
        tf_err e = tf_async_conn_close(c_, &f);
        return fut<void>(e, f);
    }
    /// Fail everything queued with CANCELLED now and reset the connection.
    Result<void> abort() noexcept
    {
        return detail::status(tf_async_conn_abort(c_));
    }
    /// The poison reason (code TF_OK while healthy).
    Error error() const
    {
        int os = 0;
        tf_err e = tf_async_conn_error(c_, &os);
        return Error(e, os);
    }
    /// A snapshot of the statistics (tf_async_conn_stats; any thread, also after the
    /// connection failed or closed): the C struct, size set to sizeof(tf_conn_stats).
    Result<tf_conn_stats> stats() const noexcept
    {
        tf_conn_stats s{};
        s.size = sizeof s;
        tf_err e = tf_async_conn_stats(c_, &s);
        if (e != TF_OK)
            return Error(e);
        return s;
    }
    Result<std::string> peer() const
    {
        char b[TF_ADDRSTR_LEN];
        tf_err e = tf_async_conn_peer(c_, b, sizeof b);
        if (e != TF_OK)
            return Error(e);
        return std::string(b);
    }
    tf_evb *loop() const noexcept
    {
        return tf_async_conn_evb(c_);
    }
    explicit operator bool() const noexcept
    {
        return c_ != nullptr;
    }
    tf_async_conn *get() const noexcept
    {
        return c_;
    }

  private:
    struct Bin {
        std::vector<std::unique_ptr<detail::HolderBase>> keep;
    };
    struct OwnedSend {
        tf_async_op op;
        std::vector<uint8_t> bytes;
        tf_promise *promise;
    };
    static void delete_array(void *p)
    {
        delete[] static_cast<uint8_t *>(p);
    }
    static void delete_bin(void *p)
    {
        delete static_cast<Bin *>(p);
    }
    static void owned_sent(tf_async_conn *, tf_async_op *, tf_err e, int os, uint8_t *, size_t len,
                           void *arg)
    {
        std::unique_ptr<OwnedSend> h(static_cast<OwnedSend *>(arg));
        if (e == TF_OK)
            (void)tf_promise_set(h->promise, TF_OK, len, nullptr, nullptr);
        else
            (void)tf_promise_fail(h->promise, e, os);
        tf_promise_free(h->promise);
    }
    template <typename H>
    static void on_msg(tf_async_conn *, tf_err e, int os, const uint8_t *data, size_t len,
                       void *arg)
    {
        auto *h = static_cast<H *>(arg);
        if (e != TF_OK)
            h->fn(Result<std::span<const uint8_t>>(Error(e, os)));
        else
            h->fn(Result<std::span<const uint8_t>>(
                std::span<const uint8_t>(data, data != nullptr ? len : 0)));
    }
    template <typename H> static void ended(tf_async_conn *, tf_err e, int os, void *arg)
    {
        static_cast<H *>(arg)->fn(Error(e, os));
    }
    template <typename H> static void writable(tf_async_conn *, void *arg)
    {
        static_cast<H *>(arg)->fn();
    }
    void reset() noexcept
    {
        if (c_ == nullptr) {
            delete std::exchange(bin_, nullptr);
            return;
        }
        tf_evb *evb = tf_async_conn_evb(c_);
        tf_async_conn_free(std::exchange(c_, nullptr));
        Bin *b = std::exchange(bin_, nullptr);
        if (b == nullptr || b->keep.empty()) {
            delete b;
            return;
        }
        // Inside one of this connection's own callbacks, the callable that runs now lives in
        // the bin: free it after the callback has returned. A stopping loop refuses the
        // dispatch; the bin is then left (a few bytes) rather than freed under a running call.
        if (evb != nullptr && tf_evb_in_loop_thread(evb)) {
            (void)tf_evb_dispatch(evb, &delete_bin, b);
            return;
        }
        delete b;
    }
    Error err(tf_err e) const
    {
        int os = 0;
        if (c_ != nullptr && tf_async_conn_error(c_, &os) != e)
            os = 0;
        return Error(e, os);
    }
    Result<void> st(tf_err e) const
    {
        if (e == TF_OK)
            return {};
        return err(e);
    }
    template <typename T> Future<T> fut(tf_err e, tf_future *f) const
    {
        if (e != TF_OK)
            return Future<T>::failed(err(e));
        return Future<T>(f);
    }
    tf_async_conn *c_ = nullptr;
    Bin *bin_ = nullptr;
};

namespace detail
{
template <> struct Take<AsyncConn> {
    static Result<AsyncConn> take(tf_future *f)
    {
        size_t n = 0;
        void *p = nullptr;
        tf_err e = tf_future_get(f, &n, &p);
        if (e != TF_OK) {
            tf_async_conn_free(static_cast<tf_async_conn *>(p));
            return Error(e, tf_future_os_err(f));
        }
        if (p == nullptr)
            return Error(TF_ERR_BAD_STATE); // taken already
        return AsyncConn(static_cast<tf_async_conn *>(p));
    }
};
} // namespace detail

/// A server on a loop (tf_async_server): handshakes run on the loop without blocking it.
/// Handshaken connections go to the accept callback if one is set, else to accept() futures.
/// Destroy it off its own callbacks (any thread; it shuts down first).
class AsyncServer
{
  public:
    AsyncServer() noexcept = default;
    AsyncServer(AsyncServer &&o) noexcept
        : s_(std::exchange(o.s_, nullptr)), accept_(std::move(o.accept_)),
          reject_(std::move(o.reject_)), events_(std::move(o.events_))
    {
    }
    AsyncServer &operator=(AsyncServer &&o) noexcept
    {
        if (this != &o) {
            tf_async_server_free(s_);
            s_ = std::exchange(o.s_, nullptr);
            accept_ = std::move(o.accept_);
            reject_ = std::move(o.reject_);
            events_ = std::move(o.events_);
        }
        return *this;
    }
    AsyncServer(const AsyncServer &) = delete;
    AsyncServer &operator=(const AsyncServer &) = delete;
    ~AsyncServer()
    {
        tf_async_server_free(s_);
    }

    /// A server on |evb|, not yet listening.
    static Result<AsyncServer> create(tf_evb *evb)
    {
        AsyncServer s;
        tf_err e = tf_async_server_new(evb, &s.s_);
        if (e != TF_OK)
            return Error(e);
        return s;
    }
    static Result<AsyncServer> create(Loop &loop)
    {
        return create(loop.get());
    }

    /// Bind and listen; accepting starts on the loop.
    Result<void> listen(const std::string &addr, const Config &cfg = {})
    {
        tf_tcp_config c = cfg.to_c();
        tf_errmsg m{};
        tf_err e = tf_async_server_init(s_, addr.c_str(), &c, &m);
        return detail::status(e, m, e == TF_ERR_IO ? errno : 0);
    }
    /// Serve on |fd|, already bound and listening; the server owns fd from this call on, also
    /// when it fails (tf_async_server_init_fd).
    Result<void> adopt(int fd, const Config &cfg = {})
    {
        tf_tcp_config c = cfg.to_c();
        tf_errmsg m{};
        tf_err e = tf_async_server_init_fd(s_, fd, &c, &m);
        return detail::status(e, m, e == TF_ERR_IO ? errno : 0);
    }
    /// Connections now: in the handshake, queued, or handed out and not yet freed.
    uint64_t active() const noexcept
    {
        return tf_async_server_active(s_);
    }
    /// Receive memory of its connections: bytes held now, the peak, waits for the budget.
    struct MemUse {
        size_t used = 0, peak = 0;
        uint64_t waits = 0;
    };
    MemUse mem_use() const noexcept
    {
        MemUse u;
        (void)tf_async_server_mem_use(s_, &u.used, &u.peak, &u.waits);
        return u;
    }
    /// fn(AsyncConn) for every handshaken client, on the loop thread. Set before listen().
    template <typename F> void on_accept(F &&fn)
    {
        using H = detail::Holder<std::decay_t<F>>;
        auto h = std::make_unique<H>(std::forward<F>(fn));
        tf_async_server_on_accept(s_, &accepted<H>, h.get());
        accept_ = std::move(h);
    }
    /// fn(std::string_view peer, const Error &why) for every client dropped in the handshake.
    template <typename F> void on_reject(F &&fn)
    {
        using H = detail::Holder<std::decay_t<F>>;
        auto h = std::make_unique<H>(std::forward<F>(fn));
        tf_async_server_on_reject(s_, &rejected_cb<H>, h.get());
        reject_ = std::move(h);
    }
    /// fn(const AsyncEvent &) for the connection events of the server's clients
    /// (tf_async_server_on_event), on the client's loop thread (with several loops, possibly at
    /// the same time on each). Per client: CONNECTED before the accept callable (or future)
    /// gets the connection, or HANDSHAKE_FAILED before the reject callable; then, for a
    /// connected one, CLOSED once when it is over (before its pending operations complete and
    /// before on_end). An event already under way may still run once with the callable it
    /// started with: a replaced callable is therefore kept (one allocation each) until the
    /// server is destroyed; none runs after shutdown() returned (unless called inside one) nor
    /// after destruction. Calls of on_event must not overlap (one thread at a time).
    template <typename F> Result<void> on_event(F &&fn)
    {
        return detail::keep_callable(events_, std::forward<F>(fn), [this](auto *h) {
            return tf_async_server_on_event(s_, &event_cb<std::remove_pointer_t<decltype(h)>>, h);
        });
    }
    /// Remove the event callable (one under way may still finish; it is kept until the server
    /// is destroyed).
    Result<void> on_event(std::nullptr_t) noexcept
    {
        return detail::status(tf_async_server_on_event(s_, nullptr, nullptr));
    }
    /// A snapshot of the statistics (tf_async_server_stats; any thread).
    Result<tf_server_stats> stats() const noexcept
    {
        return detail::server_stats(&tf_async_server_stats, s_);
    }
    /// The next handshaken connection (SHUTDOWN at shutdown; BAD_STATE before listen()).
    Future<AsyncConn> accept()
    {
        tf_future *f = nullptr;
        tf_err e = tf_async_server_accept(s_, &f);
        if (e != TF_OK)
            return Future<AsyncConn>::failed(Error(e));
        return Future<AsyncConn>(f);
    }
    Result<std::string> addr() const
    {
        char b[TF_ADDRSTR_LEN];
        tf_err e = tf_async_server_addr(s_, b, sizeof b);
        if (e != TF_OK)
            return Error(e);
        return std::string(b);
    }
    uint16_t port() const
    {
        auto a = addr();
        return a ? detail::port_of(*a) : 0;
    }
    uint64_t rejected() const noexcept
    {
        return tf_async_server_rejected(s_);
    }
    /// Any thread, idempotent: pending accepts fail with SHUTDOWN, the listen socket closes.
    Result<void> shutdown() noexcept
    {
        return detail::status(tf_async_server_shutdown(s_));
    }
    tf_async_server *get() const noexcept
    {
        return s_;
    }

  private:
    template <typename H> static void accepted(tf_async_server *, tf_async_conn *c, void *arg)
    {
        static_cast<H *>(arg)->fn(AsyncConn(c));
    }
    template <typename H>
    static void rejected_cb(tf_async_server *, const char *peer, tf_err e, int os, void *arg)
    {
        static_cast<H *>(arg)->fn(std::string_view(peer != nullptr ? peer : ""), Error(e, os));
    }
    template <typename H>
    static void event_cb(tf_async_conn *c, tf_conn_event ev, tf_err e, int os, void *arg)
    {
        static_cast<H *>(arg)->fn(AsyncEvent{c, ev, Error(e, os)});
    }
    tf_async_server *s_ = nullptr;
    std::unique_ptr<detail::HolderBase> accept_;
    std::unique_ptr<detail::HolderBase> reject_;
    std::vector<std::unique_ptr<detail::HolderBase>> events_; // the last one is current
};

/// Connects on a loop (tf_async_client): retries, back-off and the handshake run on the loop.
class AsyncClient
{
  public:
    AsyncClient() noexcept = default;
    AsyncClient(AsyncClient &&o) noexcept
        : c_(std::exchange(o.c_, nullptr)), events_(std::move(o.events_))
    {
    }
    AsyncClient &operator=(AsyncClient &&o) noexcept
    {
        if (this != &o) {
            tf_async_client_free(c_);
            c_ = std::exchange(o.c_, nullptr);
            events_ = std::move(o.events_);
        }
        return *this;
    }
    AsyncClient(const AsyncClient &) = delete;
    AsyncClient &operator=(const AsyncClient &) = delete;
    /// Cancels the connects in flight (their futures fail with CANCELLED).
    ~AsyncClient()
    {
        tf_async_client_free(c_);
    }

    static Result<AsyncClient> create(tf_evb *evb, const Config &cfg = {})
    {
        AsyncClient r;
        tf_tcp_config c = cfg.to_c();
        tf_errmsg m{};
        tf_err e = tf_async_client_new(evb, &c, &r.c_, &m);
        if (e != TF_OK)
            return std::move(detail::status(e, m)).error();
        return r;
    }
    static Result<AsyncClient> create(Loop &loop, const Config &cfg = {})
    {
        return create(loop.get(), cfg);
    }

    /// Connect to "host:port"; the future gives the handshaken connection.
    Future<AsyncConn> connect(const std::string &addr)
    {
        tf_future *f = nullptr;
        tf_errmsg m{};
        tf_err e = tf_async_client_connect(c_, addr.c_str(), &f, &m);
        if (e != TF_OK)
            return Future<AsyncConn>::failed(std::move(detail::status(e, m)).error());
        return Future<AsyncConn>(f);
    }
    /// Cancel every connect in flight.
    Result<void> cancel() noexcept
    {
        return detail::status(tf_async_client_cancel(c_));
    }
    /// fn(const AsyncEvent &) for the connection events of the client's connects
    /// (tf_async_client_on_event), on the loop thread: CONNECTED before the connect future
    /// gets the connection, or HANDSHAKE_FAILED before it fails (a connect that never reached
    /// the handshake has none); then CLOSED as for AsyncServer::on_event. A replaced callable
    /// is kept (one allocation each) until the client is destroyed, after which no event runs.
    /// Calls of on_event must not overlap (one thread at a time).
    template <typename F> Result<void> on_event(F &&fn)
    {
        return detail::keep_callable(events_, std::forward<F>(fn), [this](auto *h) {
            return tf_async_client_on_event(c_, &event_cb<std::remove_pointer_t<decltype(h)>>, h);
        });
    }
    /// Remove the event callable (kept until the client is destroyed).
    Result<void> on_event(std::nullptr_t) noexcept
    {
        return detail::status(tf_async_client_on_event(c_, nullptr, nullptr));
    }
    tf_async_client *get() const noexcept
    {
        return c_;
    }

  private:
    template <typename H>
    static void event_cb(tf_async_conn *c, tf_conn_event ev, tf_err e, int os, void *arg)
    {
        static_cast<H *>(arg)->fn(AsyncEvent{c, ev, Error(e, os)});
    }
    tf_async_client *c_ = nullptr;
    std::vector<std::unique_ptr<detail::HolderBase>> events_; // the last one is current
};

} // namespace tcpframe

#endif /* TCPFRAME_TCPFRAME_HPP */
