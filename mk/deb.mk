# Debian package: `make deb` builds build/submitd_VERSION_ARCH.deb from a
# clean clone of HEAD (tools/build-deb.sh; DEB_OUTDIR=DIR puts it elsewhere),
# `make deb-lint` runs lintian on it.

DEB_OUTDIR  ?= $(BUILD)
DEB_ARCH    := $(shell dpkg --print-architecture 2>/dev/null)
DEB_CHANGES := $(DEB_OUTDIR)/submitd_$(VERSION)_$(DEB_ARCH).changes

.PHONY: deb deb-lint man-lint
deb:
	tools/build-deb.sh $(DEB_OUTDIR)

deb-lint: deb
	lintian --fail-on error,warning --info $(DEB_CHANGES)

man-lint:
	mandoc -T lint -W warning man/*.[158]
	for m in man/*.[158]; do \
		LC_ALL=C.UTF-8 groff -ww -z -man -Tutf8 $$m 2>&1 | tee /dev/stderr | \
			(! grep -q .) || exit 1; \
	done

# The packaged service under a real systemd, in a systemd-nspawn container
# (needs debootstrap and systemd-container; the first run builds a cached
# Debian 12 base under /var/tmp).
.PHONY: deb-systemd-test
deb-systemd-test: deb
	debian/tests/nspawn-run $(DEB_OUTDIR)/submitd_$(VERSION)_$(DEB_ARCH).deb
