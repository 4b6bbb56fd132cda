# Build and install the vnet C library, header, pkg-config file, CLI and the
# vnet-cni CNI plugin.
#
#   make                       cargo build --release
#   make install PREFIX=/usr/local [DESTDIR=/stage]
#   make uninstall PREFIX=/usr/local [DESTDIR=/stage]
#
# PREFIX/LIBDIR/INCLUDEDIR are the run-time paths written into vnet.pc;
# DESTDIR only prefixes where files are copied (for packaging).

PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
# Where CNI runtimes look for plugins (with /opt/cni/bin; set CNIDIR=/opt/cni/bin for that).
CNIDIR     ?= $(PREFIX)/lib/cni
DESTDIR    ?=
CARGO      ?= cargo
INSTALL    ?= install
# Cargo's output directory (honours CARGO_TARGET_DIR like cargo does).
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
RELEASE    := $(TARGET_DIR)/release

VERSION := $(shell sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
MAJOR   := $(word 1,$(subst ., ,$(VERSION)))
SONAME  := libvnet.so.$(MAJOR)
REALLIB := libvnet.so.$(VERSION)
# What `cargo rustc --release -- --print native-static-libs` prints for the
# staticlib (minus -lc, which every C link adds): for static linking only.
LIBS_PRIVATE ?= -lgcc_s -lutil -lrt -lpthread -lm -ldl

.PHONY: all build install uninstall

all: build

# Cargo decides what is out of date; a no-op when the build is current.
build:
	$(CARGO) build --release

install: build
	$(INSTALL) -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(CNIDIR)
	$(INSTALL) -m 0755 $(RELEASE)/libvnet.so $(DESTDIR)$(LIBDIR)/$(REALLIB)
	ln -sf $(REALLIB) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libvnet.so
	$(INSTALL) -m 0644 $(RELEASE)/libvnet.a $(DESTDIR)$(LIBDIR)/libvnet.a
	$(INSTALL) -m 0644 include/vnet.h $(DESTDIR)$(INCLUDEDIR)/vnet.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@LIBS_PRIVATE@|$(LIBS_PRIVATE)|g' vnet.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/vnet.pc
	chmod 0644 $(DESTDIR)$(LIBDIR)/pkgconfig/vnet.pc
	$(INSTALL) -m 0755 $(RELEASE)/vnet $(DESTDIR)$(BINDIR)/vnet
	$(INSTALL) -m 0755 $(RELEASE)/vnet-cni $(DESTDIR)$(CNIDIR)/vnet-cni

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/$(REALLIB) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	      $(DESTDIR)$(LIBDIR)/libvnet.so $(DESTDIR)$(LIBDIR)/libvnet.a \
	      $(DESTDIR)$(INCLUDEDIR)/vnet.h $(DESTDIR)$(LIBDIR)/pkgconfig/vnet.pc \
	      $(DESTDIR)$(BINDIR)/vnet $(DESTDIR)$(CNIDIR)/vnet-cni
