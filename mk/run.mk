# mk/run.mk -- `make run`: build and run the main job; -included by the top Makefile.
#
#   make run                      installs the compiler if missing (deps), builds
#                                 build/plain/tools/tfdemo (tools/tfdemo.c + libtcpframe.a), runs it
#   make run RUN_ARGS="-n 1000 -s 16M"   options passed to the demo
#
# tfdemo: a parent and a forked child handshake over a pipe pair, the child echoes COUNT framed
# messages of assorted sizes (0 bytes .. MAXSIZE), the parent checks every byte and prints a
# summary, then shows an over-long length refused (TOO_LARGE). Exit 0 only if all matched.
# Always the optimised plain build, whatever V says. (Not `tfcat`: that name is the later CLI.)

TFDEMO   := build/plain/tools/tfdemo
RUN_ARGS ?=

run: deps
	@$(MAKE) --no-print-directory V=plain $(TFDEMO)
	$(TFDEMO) $(RUN_ARGS)

$(O)/tools/%: tools/%.c $(HEADERS) $(O)/libtcpframe.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) $(IO_CFLAGS) -o $@ $< $(O)/libtcpframe.a $(LDLIBS_ALL)
