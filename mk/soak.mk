# mk/soak.mk -- the soak of the async server (issues 15, 25); -included by the top Makefile.
#
#   make soak SECONDS=N    build/plain/tools/tfsoak -t N: random clients connect, exchange,
#                          misbehave (bad magic, oversized length, reset mid-frame, silent,
#                          trickle, mute after the magic, half-close, paused then reset, a
#                          60 MiB declared length) and leave for N seconds (default 60);
#                          then the server's fds, RSS, connections, receive memory and pending
#                          operations must be back to the baseline (figures printed). Not part of `make check`; .ci/run
#                          runs it for 60 s. SOAK_ARGS: more tfsoak options (-c threads, -s seed).
#   make soak-tls SECONDS=N
#                          the same over TLS 1.3 (tfsoak -T: mutual, certificates made at start
#                          with OpenSSL's API): the library's TLS clients (good exchanges,
#                          a half-close, paused then reset, refused certificates), a raw OpenSSL
#                          client inside TLS (bad magic, oversized and 60 MiB lengths, reset
#                          mid-frame, one-byte records, no close_notify, a trickled ClientHello,
#                          a reset mid-handshake) and plain TCP peers of the TLS server
#                          (plaintext, garbage, silent); the same end checks, plus the server's
#                          rejects by reason. Default 60 s; .ci/run runs it for 60 s.
#
# tfsoak links the TLS archive and OpenSSL (libssl-dev: scripts/deps.sh build), as tfcat does;
# V=asan builds build/asan/tools/tfsoak.

SOAK_ARGS ?=
SECONDS   ?= 60

.PHONY: soak soak-tls
soak:
	@$(MAKE) --no-print-directory V=plain build/plain/tools/tfsoak
	build/plain/tools/tfsoak -t $(SECONDS) $(SOAK_ARGS)

soak-tls:
	@$(MAKE) --no-print-directory V=plain build/plain/tools/tfsoak
	build/plain/tools/tfsoak -T -t $(SECONDS) $(SOAK_ARGS)

$(O)/tools/tfsoak: tools/tfsoak.c $(HEADERS) tls/tcpframe/tls.h $(O)/libtcpframe_tls.a \
  $(O)/libtcpframe.a tools/tf_certs.c tools/tf_certs.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(IO_CFLAGS) -Itls -o $@ $< tools/tf_certs.c $(O)/libtcpframe_tls.a $(O)/libtcpframe.a \
	  -lssl -lcrypto $(LDLIBS_ALL)
