"""compose-go's dotenv test cases (compose-go v2.9.1, the version compose 2.40.3 builds
with: dotenv/godotenv_test.go, parser_test.go, godotenv_var_expansion_test.go and the
fixtures they read), restated as data: an .env text, the environment it is read with, and
the keys and values compose gets (or the error it reports).

Each case is (name, text, environment, expected); expected is a dict of keys that must
have exactly these values (`exact=True` cases must have no other key), or an `Error`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Error:
    contains: str


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    expected: dict[str, str] | Error
    env: dict[str, str] = field(default_factory=dict)
    exact: bool = False


def _one(text: str, key: str, value: str) -> Case:
    return Case(f"parsing {text!r}", text, {key: value})


# TestParsing: one line in, one key out.
PARSING = [_one(*c) for c in [
    ("FOO=bar", "FOO", "bar"),
    ("FOO =bar", "FOO", "bar"),
    ("FOO= bar", "FOO", "bar"),
    ('FOO="bar"', "FOO", "bar"),
    ("FOO='bar'", "FOO", "bar"),
    ('FOO="escaped\\"bar"', "FOO", 'escaped"bar'),
    ('FOO="\\"quoted\\""', "FOO", '"quoted"'),
    ("FOO=\"'d'\"", "FOO", "'d'"),
    ("OPTION_A: 1", "OPTION_A", "1"),
    ("OPTION_A: Foo=bar", "OPTION_A", "Foo=bar"),
    ("OPTION_A=1:B", "OPTION_A", "1:B"),
    ("export OPTION_A=2", "OPTION_A", "2"),
    ("export OPTION_B='\\n'", "OPTION_B", "\\n"),
    ("export exportFoo=2", "exportFoo", "2"),
    ("exportFOO=2", "exportFOO", "2"),
    ("export_FOO =2", "export_FOO", "2"),
    ("export.FOO= 2", "export.FOO", "2"),
    ("export\tOPTION_A=2", "OPTION_A", "2"),
    ("  export OPTION_A=2", "OPTION_A", "2"),
    ("\texport OPTION_A=2", "OPTION_A", "2"),
    ('export OPTION_A="export A"', "OPTION_A", "export A"),
    ('FOO="bar\\nbaz"', "FOO", "bar\nbaz"),
    ("FOO=a\\tb", "FOO", "a\\tb"),
    ('FOO="a\\tb"', "FOO", "a\tb"),
    ('KEY="Z\\aZ\\bZ\\fZ\\nZ\\rZ\\tZ\\vZ\\\\Z\\0123Z"', "KEY", "Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\ZSZ"),
    ("FOO.BAR=foobar", "FOO.BAR", "foobar"),
    ("FOO=foobar=", "FOO", "foobar="),
    ("FOO=bar ", "FOO", "bar"),
    ("FOO=bar # this is foo", "FOO", "bar"),
    ("FOO=bar #this is foo", "FOO", "bar"),
    ("FOO=bar #", "FOO", "bar"),
    ("FOO=123#not-an-inline-comment", "FOO", "123#not-an-inline-comment"),
    ('FOO="bar#baz"', "FOO", "bar#baz"),
    ('FOO="bar#baz"#', "FOO", "bar#baz"),
    ('FOO="bar#baz" # comment', "FOO", "bar#baz"),
    ("FOO='bar#baz' # comment", "FOO", "bar#baz"),
    ('FOO="bar#baz#bang" # comment', "FOO", "bar#baz#bang"),
    ('FOO="ba#r"', "FOO", "ba#r"),
    ("FOO='ba#r'", "FOO", "ba#r"),
    ('FOO="bar\\n\\ b\\az"', "FOO", "bar\n\\ b\az"),
    ('FOO="bar\\\\\\n\\ b\\az"', "FOO", "bar\\\n\\ b\az"),
    ('FOO="bar\\\\r\\ b\\az"', "FOO", "bar\\r\\ b\az"),
    ('FOO="bar\\nbaz\\\\"', "FOO", "bar\nbaz\\"),
    ('="value"', "", "value"),
    (" KEY =value", "KEY", "value"),
    ("   KEY=value", "KEY", "value"),
    ("\tKEY=value", "KEY", "value"),
    ('KEY="\\0123"', "KEY", "S"),
    ('KEY="\\x07"', "KEY", "\\x07"),
    ('KEY="\\u12e4"', "KEY", "\\u12e4"),
    ('KEY="\\U00101234"', "KEY", "\\U00101234"),
]] + [Case("bad line 'lol$wut'", "lol$wut", Error("unexpected character"))]

PLAIN = "OPTION_A=1\nOPTION_B=2\nOPTION_C= 3\nOPTION_D =4\nOPTION_E = 5\n456 = ABC\n" \
        "OPTION_F = \nOPTION_G=\nOPTION_H = my string # Inline comment\n"
QUOTED = ("OPTION_A='1'\nOPTION_B='2'\nOPTION_C=''\nOPTION_D='\\n'\nOPTION_E=\"1\"\n"
          "OPTION_F=\"2\"\nOPTION_G=\"\"\nOPTION_H=\"\\n\"\n"
          "OPTION_I = \"echo 'asd'\" # Inline comment\n"
          "OPTION_J = 'first line\nsecond line\nthird line\nand so on'\n"
          "OPTION_K='Let\\'s go!'\nOPTION_Z = \"last value\"\n")
SUBSTITUTIONS = "OPTION_A=1\nOPTION_B=${OPTION_A}\nOPTION_C=$OPTION_B\n" \
                "OPTION_D=${OPTION_A}_${OPTION_B}\nOPTION_E=${OPTION_NOT_DEFINED}\n"
SUBSTITUTIONS_DEFAULT = SUBSTITUTIONS.replace("OPTION_A=1\n", "OPTION_A=${OPTION_A:-1}\n")
VAR = "VAR_TO_BE_LOADED_FROM_OS_ENV"

# The fixture files, each as the test that reads it expects.
FILES = [
    Case("plain.env", PLAIN, {"OPTION_A": "1", "OPTION_B": "2", "OPTION_C": "3",
                              "OPTION_D": "4", "OPTION_E": "5", "OPTION_F": "",
                              "OPTION_G": "", "OPTION_H": "my string"}),
    Case("utf8-bom.env", "\ufeff" + PLAIN.replace("OPTION_F = \n", "OPTION_F =\n"),
         {"OPTION_A": "1", "OPTION_B": "2", "OPTION_C": "3", "OPTION_D": "4", "OPTION_E": "5"}),
    Case("equals.env", "export OPTION_A='postgres://localhost:5432/database?sslmode=disable'\n\n",
         {"OPTION_A": "postgres://localhost:5432/database?sslmode=disable"}, exact=True),
    Case("exported.env", "export OPTION_A=2\nexport OPTION_B='\\n'\n",
         {"OPTION_A": "2", "OPTION_B": "\\n"}, exact=True),
    Case("quoted.env", QUOTED, {
        "OPTION_A": "1", "OPTION_B": "2", "OPTION_C": "", "OPTION_D": "\\n", "OPTION_E": "1",
        "OPTION_F": "2", "OPTION_G": "", "OPTION_H": "\n", "OPTION_I": "echo 'asd'",
        "OPTION_J": "first line\nsecond line\nthird line\nand so on",
        "OPTION_K": "Let's go!", "OPTION_Z": "last value"}, exact=True),
    Case("unquoted.env",
         'OPTION_A = "some quoted phrase"\nOPTION_B=first one with an unquoted phrase\n'
         "OPTION_C = then another one with an unquoted phrase\n"
         "OPTION_D = then another one with an unquoted phrase special \u00e8 char\n"
         'OPTION_E = "then another one quoted phrase"\n',
         {"OPTION_A": "some quoted phrase", "OPTION_B": "first one with an unquoted phrase",
          "OPTION_C": "then another one with an unquoted phrase",
          "OPTION_D": "then another one with an unquoted phrase special \u00e8 char",
          "OPTION_E": "then another one quoted phrase"}, exact=True),
    Case("special.env", "VAR.WITH.DOTS=dots\nVAR_WITH_UNDERSCORES=underscores\n"
         "VAR-WITH-DASHES=dashes\n", {"VAR-WITH-DASHES": "dashes", "VAR.WITH.DOTS": "dots",
                                     "VAR_WITH_UNDERSCORES": "underscores"}, exact=True),
    Case("substitutions.env", SUBSTITUTIONS, {
        "OPTION_A": "1", "OPTION_B": "1", "OPTION_C": "1", "OPTION_D": "1_1", "OPTION_E": ""},
        exact=True),
    Case("substitutions.env, OPTION_A=5 in the environment", SUBSTITUTIONS, {
        "OPTION_A": "1", "OPTION_B": "5", "OPTION_C": "5", "OPTION_D": "5_5", "OPTION_E": ""},
        env={"OPTION_A": "5"}, exact=True),
    Case("substitutions-default.env, OPTION_A=5 in the environment", SUBSTITUTIONS_DEFAULT, {
        "OPTION_A": "5", "OPTION_B": "5", "OPTION_C": "5", "OPTION_D": "5_5", "OPTION_E": ""},
        env={"OPTION_A": "5"}, exact=True),
    Case("substitutions-default.env, OPTION_A unset", SUBSTITUTIONS_DEFAULT, {
        "OPTION_A": "1", "OPTION_B": "1", "OPTION_C": "1", "OPTION_D": "1_1", "OPTION_E": ""},
        exact=True),
    Case("invalid1.env", '# some comments\nfoo="\n  a\n  multine\n  value\n"\nINVALID LINE\n'
         "zot=qix", Error("line 7: key cannot contain a space")),
    Case("inherited-multi-var.env", f"foo=bar\n{VAR}\nbar=baz\n",
         {VAR: "SOME_RANDOM_VALUE", "foo": "bar", "bar": "baz"},
         env={VAR: "SOME_RANDOM_VALUE"}, exact=True),
    Case("inherited-single-var.env", f"{VAR}\n", {VAR: "SOME_RANDOM_VALUE"},
         env={VAR: "SOME_RANDOM_VALUE"}, exact=True),
    Case("inherited-not-found.env", "VARIABLE_NOT_FOUND\n", {}, exact=True),
]

OTHERS = [
    Case("TestParse", "ONE=1\nTWO='2'\nTHREE = \"3\"", {"ONE": "1", "TWO": "2", "THREE": "3"}),
    Case("TestParseBytes", "\na=b\na[1]=c\na.propertyKey=d\n"
         "\u00e1rv\u00edzt\u0171r\u0151-T\u00dcK\u00d6RF\u00daR\u00d3G\u00c9P="
         "\u00c1RV\u00cdZT\u0170R\u0150-t\u00fck\u00f6rf\u00far\u00f3g\u00e9p\n",
         {"a": "b", "a[1]": "c", "a.propertyKey": "d",
          "\u00e1rv\u00edzt\u0171r\u0151-T\u00dcK\u00d6RF\u00daR\u00d3G\u00c9P":
          "\u00c1RV\u00cdZT\u0170R\u0150-t\u00fck\u00f6rf\u00far\u00f3g\u00e9p"}, exact=True),
    Case("TestParseVariable", "%!(EXTRA string)=foo",
         Error("line 1: unexpected character '%' in variable name")),
    Case("TestMemoryExplosion", "\n".join(f"KEY{i}=VALUE{i}" for i in range(1000)),
         {f"KEY{i}": f"VALUE{i}" for i in range(1000)}, exact=True),
    Case("TestVariableStringValueSeparator",
         'TEST_URLS="stratum+tcp://stratum.antpool.com:3333\n'
         'stratum+tcp://stratum.antpool.com:443"',
         {"TEST_URLS": "stratum+tcp://stratum.antpool.com:3333\n"
                       "stratum+tcp://stratum.antpool.com:443"}, exact=True),
    Case("TestExpandingEnvironmentWithLookup", "TEST=$ME", {"TEST": "YES"}, env={"ME": "YES"}),
    Case("TestMultipleFiles base.env", "\nENV_HOSTNAME=localhost\n"
         'ENV_MY_URL="http://${ENV_HOSTNAME}"\n',
         {"ENV_HOSTNAME": "localhost", "ENV_MY_URL": "http://localhost"}),
    Case("TestMultipleFiles base.env, ENV_HOSTNAME in the environment",
         "\nENV_HOSTNAME=localhost\nENV_MY_URL=\"http://${ENV_HOSTNAME}\"\n",
         {"ENV_HOSTNAME": "localhost", "ENV_MY_URL": "http://host.local"},
         env={"ENV_HOSTNAME": "host.local"}),
]

# TestExpanding
EXPANDING = [
    Case("expands variables found in values", "FOO=test\nBAR=$FOO",
         {"FOO": "test", "BAR": "test"}),
    Case("parses variables wrapped in brackets", "FOO=test\nBAR=${FOO}bar",
         {"FOO": "test", "BAR": "testbar"}),
    Case("expands undefined variables to an empty string", "BAR=$FOO", {"BAR": ""}),
    Case("expands variables in double quoted strings", 'FOO=test\nBAR="quote $FOO"',
         {"FOO": "test", "BAR": "quote test"}),
    Case("does not expand variables in single quoted strings", "BAR='quote $FOO'",
         {"BAR": "quote $FOO"}),
    Case("does not expand escaped variables 1", 'FOO="foo\\$BAR"', {"FOO": "foo$BAR"}),
    Case("does not expand escaped variables 2", 'FOO="foo\\${BAR}"', {"FOO": "foo${BAR}"}),
    Case("does not expand escaped variables 3", 'FOO=test\nBAR="foo\\${FOO} ${FOO}"',
         {"FOO": "test", "BAR": "foo${FOO} test"}),
]

# TestUnterminatedQuotes
UNTERMINATED = [Case(f"unterminated {t!r}", t, Error("unterminated quoted value"))
                for t in ['KEY="', 'KEY="value', 'KEY="value\\"', "KEY=\"value'", "KEY='",
                          "KEY='value", "KEY='value\\'", "KEY='value\""]]

# TestLinesToIgnore: nothing but blanks and comments is no key at all.
IGNORED = [Case(f"ignored {t!r}", t, {}, exact=True)
           for t in ["\n", "\r\n", "\t\t ", "# Comment", "\t # comment"]]

# godotenv_var_expansion_test.go: the template forms, with EMPTY_VAR="" and TEST_VAR set.
_TV = {"EMPTY_VAR": "", "TEST_VAR": "Test Value"}
TEMPLATES = [Case(f"template {t}", f"RESULT={t}", expected, env=_TV) for t, expected in [
    ("${UNSET_VAR:-Default Value}", {"RESULT": "Default Value"}),
    ("${EMPTY_VAR:-Default Value}", {"RESULT": "Default Value"}),
    ("${TEST_VAR:-Default Value}", {"RESULT": "Test Value"}),
    ("${UNSET_VAR-Default Value}", {"RESULT": "Default Value"}),
    ("${EMPTY_VAR-Default Value}", {"RESULT": ""}),
    ("${TEST_VAR-Default Value}", {"RESULT": "Test Value"}),
    ("${UNSET_VAR:?Test error}", Error("required variable UNSET_VAR is missing a value: "
                                       "Test error")),
    ("${EMPTY_VAR:?Test error}", Error("required variable EMPTY_VAR is missing a value: "
                                       "Test error")),
    ("${TEST_VAR:?Default Value}", {"RESULT": "Test Value"}),
    ("${UNSET_VAR?Test error}", Error("required variable UNSET_VAR is missing a value: "
                                      "Test error")),
    ("${EMPTY_VAR?Test error}", {"RESULT": ""}),
    ("${TEST_VAR?Default Value}", {"RESULT": "Test Value"}),
]]

ALL = PARSING + FILES + OTHERS + EXPANDING + UNTERMINATED + IGNORED + TEMPLATES
