# Turns the file IN into a C source OUT that defines rl_default_template
# and rl_default_template_len.  Run with cmake -DIN=... -DOUT=... -P.
file(READ ${IN} hex HEX)
file(SIZE ${IN} size)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)"
       "\\1\n" bytes "${bytes}")
file(WRITE ${OUT}
  "/* Generated from ${IN}; do not edit. */\n"
  "#include <stddef.h>\n"
  "const char rl_default_template[] = {\n${bytes}0x00};\n"
  "const size_t rl_default_template_len = ${size};\n")
