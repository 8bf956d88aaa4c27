/* io/unix.c -- what only Unix-domain sockets have (SPEC 9.9): the peer's credentials, the
 * servers' uid rule, the stale socket file found at bind time and the listening path a server
 * removes when it stops (only its own: the file it created, still a socket, same inode). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

int tf__sock_domain(int fd)
{
    int d = AF_UNSPEC;
    socklen_t dl = sizeof d;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &d, &dl) != 0)
        return AF_UNSPEC;
    return d;
}

tf_err tf__peer_cred(int fd, tf_peer_cred *out, int *os_err)
{
    if (os_err)
        *os_err = 0;
    memset(out, 0, sizeof *out);
    if (fd < 0 || tf__sock_domain(fd) != AF_UNIX)
        return TF_ERR_INVALID_ARGUMENT;
    struct ucred uc;
    socklen_t ul = sizeof uc;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &ul) != 0) {
        if (os_err)
            *os_err = errno;
        return TF_ERR_IO;
    }
    out->pid = uc.pid;
    out->uid = uc.uid;
    out->gid = uc.gid;
    return TF_OK;
}

bool tf__unix_rule(const tf_tcp_config *c)
{
    return c->unix_peer_uid != TF_UNSET || c->unix_peer_same_uid == 1;
}

tf_err tf__unix_peer_check(int fd, const tf_tcp_config *c, int *os_err)
{
    if (os_err)
        *os_err = 0;
    if (!tf__unix_rule(c))
        return TF_OK;
    tf_peer_cred pc;
    tf_err e = tf__peer_cred(fd, &pc, os_err);
    if (e != TF_OK)
        return TF_ERR_PEER_DENIED; /* no credentials (not a Unix socket): never allowed */
    if (c->unix_peer_uid != TF_UNSET && (int64_t)pc.uid == c->unix_peer_uid)
        return TF_OK;
    if (c->unix_peer_same_uid == 1 && pc.uid == geteuid())
        return TF_OK;
    return TF_ERR_PEER_DENIED;
}

/* The path of a path-bound AF_UNIX address into |path| (TF_UNIX_PATH_MAX + 1 bytes); false for
 * another family, an abstract or an unnamed address. */
bool tf__unix_path_of(const tf_addr *a, char *path)
{
    const size_t base = offsetof(struct sockaddr_un, sun_path);
    if (a->ss.ss_family != AF_UNIX || a->len <= (socklen_t)base)
        return false;
    const struct sockaddr_un *su = (const struct sockaddr_un *)&a->ss;
    size_t pl = (size_t)a->len - base;
    if (su->sun_path[0] == '\0')
        return false;
    size_t n = strnlen(su->sun_path, pl);
    if (n > TF_UNIX_PATH_MAX)
        return false;
    memcpy(path, su->sun_path, n);
    path[n] = '\0';
    return true;
}

int tf__unix_probe(const tf_addr *a)
{
    char path[TF_UNIX_PATH_MAX + 1];
    if (!tf__unix_path_of(a, path))
        return TF__UNIX_LIVE; /* an abstract name in use: someone holds it */
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? TF__UNIX_GONE : TF__UNIX_UNKNOWN;
    if (!S_ISSOCK(st.st_mode))
        return TF__UNIX_NOT_SOCKET;
    /* Nobody listens on a socket file left behind: connect says ECONNREFUSED at once. A live
     * server takes this connection into its backlog (or EAGAIN when that is full) and sees it
     * close before any handshake. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return TF__UNIX_UNKNOWN; /* cannot tell: never remove */
    int rc = connect(fd, (const struct sockaddr *)&a->ss, a->len);
    int e = rc == 0 ? 0 : errno;
    close(fd);
    return e == ECONNREFUSED ? TF__UNIX_STALE : TF__UNIX_LIVE;
}

bool tf__unix_remove_stale(const tf_addr *a)
{
    char path[TF_UNIX_PATH_MAX + 1];
    if (!tf__unix_path_of(a, path))
        return false;
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode))
        return false;
    return unlink(path) == 0;
}

void tf__unix_owned_note(tf__unix_owned *o, const tf_addr *a)
{
    memset(o, 0, sizeof *o);
    struct stat st;
    if (!tf__unix_path_of(a, o->path) || lstat(o->path, &st) != 0 || !S_ISSOCK(st.st_mode))
        return;
    o->dev = st.st_dev;
    o->ino = st.st_ino;
    o->set = true;
}

void tf__unix_owned_release(tf__unix_owned *o)
{
    if (!o || !o->set)
        return;
    o->set = false;
    struct stat st;
    /* Still the file our bind made: a socket with the same device and inode (not one a newer
     * server bound after removing ours, nor anything else put there since). */
    if (lstat(o->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == o->dev &&
        st.st_ino == o->ino)
        (void)unlink(o->path);
}
