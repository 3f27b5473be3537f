/*
 * native_os.h - the operating system's sockets behind Windows values.
 *
 * native_os.c is the only file that includes the OS's socket headers; its
 * callers (native.c, native_wsp.c, native_ext.c) speak Windows constants,
 * Windows sockaddr layouts and Winsock errors.  Every function returns >= 0,
 * or -WSAExxx.
 */
#ifndef LWSP_NATIVE_OS_H
#define LWSP_NATIVE_OS_H
#include <stddef.h>

enum { NOS_IN = 1, NOS_OUT = 2, NOS_ERR = 4, NOS_HUP = 8 };
typedef struct { long long fd; short events, revents; } nos_pollfd;

long long nos_socket(int af, int type, int protocol);   /* non-blocking, close-on-exec */
int nos_close(long long fd);
long long nos_dup(long long fd);                         /* another descriptor of the same socket */
int nos_bind(long long fd, const void *addr, int len);
int nos_connect(long long fd, const void *addr, int len); /* -WSAEWOULDBLOCK while in progress */
int nos_connect_result(long long fd);                     /* SO_ERROR as a Winsock error (0: connected) */
int nos_listen(long long fd, int backlog);
long long nos_accept(long long fd, void *addr, int *len);
long nos_send(long long fd, const void *buf, size_t len, int flags, const void *to, int tolen);
/* A datagram longer than len gives its full length (len bytes delivered). */
long nos_recv(long long fd, void *buf, size_t len, int flags, void *from, int *fromlen, int dgram);
int nos_shutdown(long long fd, int how);
int nos_name(long long fd, int peer, void *addr, int *len);
int nos_getsockopt(long long fd, int level, int name, void *val, int *len);
int nos_setsockopt(long long fd, int level, int name, const void *val, int len);
int nos_readable_bytes(long long fd, unsigned long *n);
int nos_atmark(long long fd);
int nos_poll(nos_pollfd *fds, int n, int ms);
int nos_wsa_error(int err);                               /* errno -> WSAExxx */
int nos_pipe(long long fds[2]);                           /* a wake-up pipe, both ends non-blocking */
void nos_poke(long long fd);
void nos_drain(long long fd);

#ifdef _WIN32
/* Winsock's own overlapped I/O, completing on the provider's completion port
 * (every socket made after nos_port_open is associated with it). */
int nos_port_open(void);
void nos_port_close(void);
void nos_port_wake(void);                                 /* a packet with no operation */
/* Starts an overlapped send or receive (bufs: a WSABUF array) for ctx: 1 done
 * at once (*bytes, *outflags set; its completion still arrives), 0 pending,
 * or -error (not started, nothing will arrive; *bytes what came, e.g. with
 * WSAEMSGSIZE). */
int nos_ov_start(long long fd, int send, const void *bufs, unsigned long nbufs, unsigned long flags, const void *to,
                 int tolen, void *from, int *fromlen, void *ctx, unsigned long *bytes, unsigned long *outflags);
/* One completion: 1 (ctx NULL for a wake-up), 0 on timeout, -1 when the port is gone. */
int nos_port_wait(void **ctx, unsigned long *bytes, unsigned long *flags, int *error, int ms);
#endif
#endif
