"""Tests of the diff proxy."""
