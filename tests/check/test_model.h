/* The model directory the element tests render with: $VDIT_TEST_MODEL, else the
 * source tree's models/tiny; and the device they render on. */
#pragma once

#include <glib.h>

extern gchar *model_dir;

void setup_model (void);
void teardown_model (void);

/* $VDIT_TEST_DEVICE, else "cpu". For cuda without a usable device it prints why and
 * returns NULL: the test then exits 77 (skipped). On cuda, check runs the tests in this
 * process (CK_FORK=no): the probe started CUDA here, and a CUDA context does not survive
 * fork(). Call after gst_check_init. */
const gchar *test_device_from_env (void);
