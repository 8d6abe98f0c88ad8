/* The model directory the element tests render with: $VDIT_TEST_MODEL, else the
 * source tree's models/tiny. */
#pragma once

#include <glib.h>

extern gchar *model_dir;

void setup_model (void);
void teardown_model (void);
