// Package codepkg handles deployment packages: the zip files users upload as
// function code. It validates them (Inspect), unpacks them safely into a
// directory (Extract), and builds them from a directory for the CLI (ZipDir).
//
// It owns: Lambda's package limits (50 MB zipped, 250 MB unzipped, a file
// count), CodeSha256, path and symlink safety, file-mode normalisation, and
// atomic extraction (a temp sibling renamed into place).
//
// It must never: write outside the target directory, write through a
// symlink, trust sizes declared in zip headers, leave a half-extracted
// directory under the final name, or echo more of an entry name in an error
// than a short, sanitised excerpt.
package codepkg
